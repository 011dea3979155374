"""Where refusalscope keeps its cache and run outputs."""

from __future__ import annotations

import os
from pathlib import Path


def home() -> Path:
    """Cache root: `$REFUSALSCOPE_HOME`, default `~/.cache/refusalscope`."""
    env = os.environ.get("REFUSALSCOPE_HOME")
    return Path(env).expanduser() if env else Path.home() / ".cache" / "refusalscope"


def models_dir() -> Path:
    return home() / "models"


def data_dir() -> Path:
    """Pulled and built datasets (JSONL)."""
    return home() / "data"


def artifacts_dir() -> Path:
    """Run outputs: `$REFUSALSCOPE_ARTIFACTS`, default `./artifacts`."""
    env = os.environ.get("REFUSALSCOPE_ARTIFACTS")
    return Path(env).expanduser() if env else Path.cwd() / "artifacts"


def runs_dir() -> Path:
    return artifacts_dir() / "runs"
