"""`refusalscope score drift BASELINE_RUN OTHER_RUN`: Refusal Drift between two runs."""

from __future__ import annotations

import typer


def register(group: typer.Typer) -> None:
    """Add `drift` to the `score` group."""
