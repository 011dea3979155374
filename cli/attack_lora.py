"""`refusalscope attack lora`."""

from __future__ import annotations

import typer


def register(group: typer.Typer) -> None:
    """Add `lora` to the `attack` group."""
