"""`refusalscope score validate RUN... --judge JUDGE`: agreement of our labels with a judge."""

from __future__ import annotations

import typer


def register(group: typer.Typer) -> None:
    """Add `validate` to the `score` group."""
