"""Shared fixtures. Every test gets its own cache and artifacts folders."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")


@pytest.fixture(autouse=True)
def _isolated_dirs(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("REFUSALSCOPE_ARTIFACTS", str(tmp_path / "artifacts"))
    if "REFUSALSCOPE_TEST_SHARED_HOME" not in os.environ:
        monkeypatch.setenv("REFUSALSCOPE_HOME", str(tmp_path / "home"))
