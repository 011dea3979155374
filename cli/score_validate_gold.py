"""`refusalscope score validate RUN... --gold LABELS`: every scorer against human labels."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from refusalscope.cli._common import console


def _fmt(x: float | None) -> str:
    return "-" if x is None else f"{x:.3f}"


def validate_gold(runs: list[Path], gold: Path, rescore: bool = False,
                  classifier: str = "default") -> None:
    """Compare, print one table, and name the `validate` run written."""
    from rich.table import Table

    from refusalscope.scoring.validate_gold import run_gold_validate

    run, v = run_gold_validate([str(r) for r in runs], gold, fresh=rescore,
                               classifier=classifier)
    out = console()
    table = Table(title=f"scorers vs human labels ({', '.join(v['labellers'])}; "
                        f"{v['labels']['used']} labels: "
                        + ", ".join(f"{k} {n}" for k, n in sorted(v["human"].items())) + ")")
    for col in ("scorer", "n", "refused agr", "refused kappa", "complied agr",
                "complied kappa", "outcome agr", "outcome kappa"):
        table.add_column(col, justify="left" if col == "scorer" else "right")
    for name, s in v["scorers"].items():
        table.add_row(name, str(s["n"]), *(f(s[k][m]) for k in ("refused", "complied", "outcome")
                                           for m, f in (("agreement", _fmt), ("kappa", _fmt))))
    out.print(table)
    for name, s in v["scorers"].items():
        out.print(f"{name} outcome confusion (ours/human): {_confusion(s['outcome'])}",
                  highlight=False)
    for note in v.get("notes", []):
        out.print(note, highlight=False)
    left = {k: n for k, n in v["labels"].items() if k != "used" and n}
    if left:
        out.print(f"labels left out: {left}", highlight=False)
    out.print(f"wrote {run.path}", highlight=False)


def _confusion(block: dict[str, Any]) -> str:
    return ", ".join(f"{k.removeprefix('ours_').replace('__human_', '/')} {n}"
                     for k, n in block["confusion"].items() if n)
