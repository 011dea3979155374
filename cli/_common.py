"""Shared CLI plumbing: one-line errors with exit code 2, logging, consoles."""

from __future__ import annotations

import functools
import logging
import sys
from collections.abc import Callable
from typing import Any, TypeVar

import typer

from refusalscope.errors import UserError

F = TypeVar("F", bound=Callable[..., Any])


def user_errors(fn: F) -> F:
    """Turn `UserError` (and a missing file) into one line on stderr and exit code 2."""

    @functools.wraps(fn)
    def wrapper(*args: Any, **kwargs: Any) -> Any:
        try:
            return fn(*args, **kwargs)
        except UserError as e:
            msg = " ".join(str(e).split())
            typer.echo(f"error: {msg}", err=True)
            raise typer.Exit(2) from None
        except FileNotFoundError as e:
            typer.echo(f"error: file not found: {e.filename or e}", err=True)
            raise typer.Exit(2) from None

    return wrapper  # type: ignore[return-value]


def setup_logging(verbose: bool = False) -> None:
    logging.basicConfig(
        level=logging.INFO if verbose else logging.WARNING,
        format="%(levelname)s %(name)s: %(message)s",
        stream=sys.stderr,
    )


def console():  # type: ignore[no-untyped-def]
    """A rich console on stdout (imported lazily: rich costs start-up time)."""
    import shutil

    from rich.console import Console

    # Piped output (logs, CI) defaults to 80 columns, which folds run ids; use a wider page.
    width = None if sys.stdout.isatty() else max(160, shutil.get_terminal_size().columns)
    return Console(highlight=False, width=width)


def serve_until_interrupted(server: Any) -> None:
    """Run a `socketserver` server until Ctrl-C, then close its socket (no traceback)."""
    try:
        server.serve_forever()
    except KeyboardInterrupt:
        pass
    finally:
        server.server_close()
