"""Write a static, self-contained site for a study or runs: `index.html` plus the report's
figures copied beside it.

The page needs no server and fetches nothing from the network: the rows are embedded as JSON
(`<`, `>` and `&` written as `\\u003c`-style escapes, so no response can close the script
element), and the script and style are inlined from this package (`view/static/`). Every
prompt and response is put on the page as text (`textContent`), never as markup.
"""

from __future__ import annotations

import json
import shutil
from collections.abc import Sequence
from importlib import resources
from pathlib import Path
from typing import Any

from refusalscope.errors import UserError
from refusalscope.fileio import atomic_write_text
from refusalscope.view.markdown import to_html
from refusalscope.view.rows import ViewData, cells, collect

REPORT_DIR = "report"  # figures of the study's report are copied under <site>/report/


def static_text(name: str) -> str:
    """A file shipped in `refusalscope/view/static/`."""
    return resources.files("refusalscope.view").joinpath("static", name).read_text("utf-8")


def embed_json(obj: Any) -> str:
    """JSON safe inside a `<script type="application/json">` element."""
    text = json.dumps(obj, ensure_ascii=False, separators=(",", ":"))
    return text.replace("<", "\\u003c").replace(">", "\\u003e").replace("&", "\\u0026")


def _report_html(data: ViewData, out: Path) -> str:
    """The study report rendered, its images copied into `out/report/`."""
    if data.report is None:
        if data.study is not None:
            return ("<p>No report yet: run <code>refusalscope study report</code> on this "
                    "study for Findings, fits and figures.</p>")
        return ""
    body, images = to_html((data.report / "report.md").read_text(encoding="utf-8"),
                           prefix=REPORT_DIR + "/")
    for rel in images:
        src = data.report / rel
        if src.is_file():
            dst = out / REPORT_DIR / rel
            dst.parent.mkdir(parents=True, exist_ok=True)
            shutil.copyfile(src, dst)
    return body


def page(data: ViewData, report_html: str) -> str:
    """The whole `index.html` text."""
    payload = {"rows": data.rows, "runs": data.runs, "scorers": data.scorers,
               "cells": cells(data.rows), "title": data.title, "notes": data.notes,
               "study": str(data.study) if data.study else None,
               "report": str(data.report) if data.report else None}
    import html

    return (static_text("view.html")
            .replace("/*CSS*/", static_text("view.css"))
            .replace("/*JS*/", static_text("view.js"))
            .replace("/*DATA*/", embed_json(payload))  # before the report: it may hold the marker
            .replace("<!--TITLE-->", html.escape(data.title))
            .replace("<!--REPORT-->", report_html))


def build_site(targets: Sequence[str | Path], out: str | Path, *, overwrite: bool = False,
               max_rows: int | None = None) -> tuple[Path, ViewData]:
    """Write the site for `targets` (a study, run folders or a folder of runs) into `out`.

    Returns the page's path and the data on it. An existing non-empty `out` is refused unless
    `overwrite` (then only `index.html` and `report/` are replaced).

    Example:
        index, data = build_site(["artifacts/studies/lora-grid"], "site")
        print(index, len(data.rows))
    """
    out = Path(out)
    if out.exists() and any(out.iterdir()) and not overwrite:
        raise UserError(f"{out} exists and is not empty: pass --overwrite or another --out")
    data = collect(targets, max_rows=max_rows)
    out.mkdir(parents=True, exist_ok=True)
    if (out / REPORT_DIR).is_dir():
        shutil.rmtree(out / REPORT_DIR)
    report_html = _report_html(data, out)
    index = out / "index.html"
    atomic_write_text(index, page(data, report_html))
    return index, data
