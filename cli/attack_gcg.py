"""`refusalscope attack gcg`."""

from __future__ import annotations

import typer


def register(group: typer.Typer) -> None:
    """Add `gcg` to the `attack` group."""
