"""Paths in a study folder that survive moving it (run on a GPU box, reported on a laptop).

A node's `node.json` stores the paths of its outputs relative to the study folder
(`"paths": "study"` and the keys it made relative), and `executor.record` turns them back into
paths under wherever the folder is now. Records written before (absolute paths) and the
absolute paths the run code writes into run configs (`adapter`, `prompts_file`, a defended
`model`, `baseline`) are read through `in_study`: a path that no longer exists but points into
some study's `nodes/<node id>/` is taken from the same place in the study the reader is in.

Layout: `<study>/nodes/<node id>/runs/<run>/`; node ids are `<kind>-<12 hex>` (`graph.py`).
"""

from __future__ import annotations

import re
from collections.abc import Callable
from pathlib import Path, PurePosixPath
from typing import Any

MARK = "study"  # node.json "paths" value: outputs listed in "relative" are study-relative
_NODE_ID = r"[a-z][a-z-]*-[0-9a-f]{12}"
_IN_NODES = re.compile(rf"(?:^|/)(nodes/{_NODE_ID}(?:/.*)?)$")


def study_of(path: str | Path) -> Path | None:
    """The study folder that `path` (a node's folder or anything inside it) lies in, or None."""
    p = Path(path).absolute()
    for a in (p, *p.parents):
        if a.parent.name == "nodes" and re.fullmatch(_NODE_ID, a.name):
            return a.parent.parent
    return None


def in_study(ref: str | Path, study: Path) -> Path:
    """Where `ref`, a path recorded by a node of `study`, is now.

    Relative: under `study`. Absolute and present: itself. Absolute, gone, and inside some
    study's `nodes/<node id>/` (the folder was moved or copied): the same place under `study`.

    Example:
        >>> in_study("/old/box/studies/s/nodes/score-0123456789ab/x.json", Path("/new/s"))
        PosixPath('/new/s/nodes/score-0123456789ab/x.json')
    """
    p = Path(ref)
    if not p.is_absolute():
        return study / p
    if p.exists():
        return p
    m = _IN_NODES.search(PurePosixPath(p).as_posix())
    return study / m.group(1) if m else p


def for_run(ref: str | Path, run_path: Path) -> Path:
    """`in_study` for a path found in a run's config, the study being the run's own (if any)."""
    study = study_of(run_path)
    return in_study(ref, study) if study is not None else Path(ref)


def _map_leaves(d: dict[str, Any], leaf: Callable[[str, Any], Any], prefix: str = ""
                ) -> dict[str, Any]:
    """`d` with every non-dict value replaced by `leaf(key, value)`; keys of nested dicts are
    joined with "/" ("runs/4")."""
    return {k: _map_leaves(v, leaf, f"{prefix}{k}/") if isinstance(v, dict)
            else leaf(f"{prefix}{k}", v) for k, v in d.items()}


def relative_outputs(outputs: dict[str, Any], study: Path) -> tuple[dict[str, Any], list[str]]:
    """`outputs` with every path under `study` made relative to it (POSIX), and the keys
    ("run", "runs/4", ...) it changed."""
    root = study.resolve()
    changed: list[str] = []

    def leaf(key: str, v: Any) -> Any:
        if isinstance(v, str) and v and Path(v).is_absolute() \
                and Path(v).resolve().is_relative_to(root):
            changed.append(key)
            return Path(v).resolve().relative_to(root).as_posix()
        return v

    return _map_leaves(outputs, leaf), changed


def absolute_outputs(rec: dict[str, Any], study: Path) -> dict[str, Any]:
    """A `node.json` record with its output paths under `study` as it is now (new records:
    the keys listed as relative; old ones: every absolute path that moved with the study)."""
    keys = set(rec.get("relative", [])) if rec.get("paths") == MARK else None

    def leaf(key: str, v: Any) -> Any:
        if isinstance(v, str) and (key in keys if keys is not None else Path(v).is_absolute()):
            return str(in_study(v, study))
        return v

    return {**rec, "outputs": _map_leaves(rec.get("outputs", {}), leaf)}
