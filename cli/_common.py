"""Shared CLI plumbing: one-line errors with exit code 2, logging, consoles."""

from __future__ import annotations

import functools
import logging
import sys
from collections.abc import Callable
from typing import Any, TypeVar

import typer
from typer.core import TyperGroup

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


# --- One CLI vocabulary (docs/cli.md) -------------------------------------------------------
# Old option spellings that still work for one release: command path ("probe sweep") ->
# {old: new}. Each module registers its own with `rename_options`; `VocabGroup` (the root
# app's class) applies them, prints a one-line deprecation note, and fills word metavars.
RENAMED: dict[str, dict[str, str]] = {}

# Word metavars by option name, then by type: never a Python type such as `<str>`.
_METAVAR_BY_NAME = {
    "model": "MODEL", "generator": "MODEL", "adapter": "RUN", "device": "DEVICE",
    "dtype": "DTYPE", "store_dtype": "DTYPE", "out": "DIR", "resume": "RUN",
    "baseline": "RUN", "directions": "FILE", "prompts": "FILE", "data": "FILE",
    "input": "FILE", "seeds": "LIST", "coef": "LIST", "layers": "LAYERS", "split": "SPLIT",
    "scorer": "SCORER", "judge": "JUDGE", "steer": "SPEC", "host": "HOST", "port": "PORT",
    "name": "NAME", "sites": "LIST", "site": "SITE", "positions": "POSITIONS", "rubric": "NAME",
    "classifier": "NAME", "backbone": "MODEL", "embedder": "MODEL", "spec": "SPEC",
    "rates": "FILE", "gold": "FILE", "labeller": "NAME", "address": "ADDRESS",
}
_METAVAR_BY_TYPE = {int: "N", float: "NUMBER", str: "TEXT"}


def rename_options(command: str, renames: dict[str, str]) -> None:
    """Keep `renames` (old -> new spelling) of `command`'s options working for one release.

    Example:
        rename_options("steer eval", {"--alpha": "--coef"})
    """
    RENAMED.setdefault(command, {}).update(renames)


def word_metavar(param: Any) -> str:
    """A metavar for `param` from its name, else its type (`N`, `NUMBER`, `TEXT`, `PATH`)."""
    name = param.name or ""
    ann = getattr(getattr(param, "type_descriptor", None), "annotation", None)
    inner = getattr(ann, "__args__", None)
    if inner and ann is not None and getattr(ann, "__origin__", None) is list:
        ann = inner[0]
    word = _METAVAR_BY_NAME.get(name) or _METAVAR_BY_TYPE.get(ann)  # type: ignore[arg-type]
    if word is None:
        word = "PATH" if getattr(ann, "__name__", "") in ("Path", "PurePath") else name.upper()
    return word


def _rewrite(path: str, renames: dict[str, str], args: list[str], stop: set[str]) -> list[str]:
    """`args` with old spellings replaced (a note on stderr for each); stops at `--` or at a
    subcommand name in `stop`."""
    out = list(args)
    for i, a in enumerate(out):
        if a == "--" or a in stop:
            break
        key, eq, val = a.partition("=")
        if key in renames:
            new = renames[key]
            typer.echo(f"note: `{path} {key}` is deprecated and goes in the next release; "
                       f"use {new}", err=True)
            out[i] = new + eq + val
    return out


def _apply_vocabulary(cmd: Any, path: list[str]) -> None:
    """Fill word metavars on `cmd` and its subcommands; hook their old option spellings."""
    for p in getattr(cmd, "params", ()):
        if getattr(p, "param_type_name", "") == "argument":
            if p.metavar is None:
                p.metavar = (p.name or "arg").upper()  # the usage line adds "..."
            p.display_type_rich = lambda ctx: None  # the metavar says it; no `<list[str]>`
        elif p.metavar is None and not getattr(p, "is_flag", False) \
                and not getattr(p, "count", False):
            p.metavar = word_metavar(p)
    key = " ".join(path)
    renames = RENAMED.get(key)
    subs = getattr(cmd, "commands", None) or {}
    if renames:
        parse = cmd.parse_args

        def parse_args(ctx: Any, args: list[str], _parse: Any = parse) -> list[str]:
            return _parse(ctx, _rewrite(f"refusalscope {key}", renames, args, set(subs)))

        cmd.parse_args = parse_args
    for name, sub in subs.items():
        _apply_vocabulary(sub, [*path, name])


class VocabGroup(TyperGroup):
    """The root group: applies the vocabulary (metavars, deprecated spellings) to every command."""

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        for name, sub in self.commands.items():
            _apply_vocabulary(sub, [name])


def example(text: str) -> str:
    """`text` as the closing example of a command's help (kept on its own lines by click)."""
    return "\b\nExample:\n  " + text


def out_option(what: str = "the run folder") -> Any:
    """The `--out DIR` option shared by every command that writes a run."""
    return typer.Option(None, "--out", metavar="DIR",
                        help=f"Write {what} here (new or empty folder) [default: a new run "
                             "under $REFUSALSCOPE_ARTIFACTS/runs, printed at the end].")


def default(config: type, field: str) -> Any:
    """The default of `config`'s dataclass `field`: the CLI reads it rather than repeating it.

    Example:
        n: int = typer.Option(default(GenerateConfig, "n"), "--n", help="...")
    """
    return config.__dataclass_fields__[field].default  # type: ignore[attr-defined]


DEVICE_HELP = "Where the model runs: auto (first GPU, else CPU) | cpu | cuda | cuda:N | mps."
DTYPE_HELP = ("The model's weights and activations: auto (bfloat16 on GPU, float32 on CPU) | "
              "float32 | bfloat16 | float16.")
BATCH_HELP = "Prompts per forward pass (memory, not results: outputs do not depend on it)."
