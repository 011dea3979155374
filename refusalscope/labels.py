"""Human labels of run responses: one JSON line per label, appended as it is given.

A labels file (written by `refusalscope label`) holds rows
`{"prompt_id", "run", "response_sha256", "label", "labeller", "time", ...}` with `label` one of
`refused`, `complied`, `degenerate` or `skip`. Each line is appended and fsynced before the
labeller sees the next response, so a killed tab or server loses nothing; the last line of a
file whose writer died mid-line is ignored on read. A later line for the same (run, prompt id,
response hash, labeller) supersedes an earlier one.

The texts are not copied into the file: they are joined back from the run's
`generations.jsonl` by run and prompt id, and the response's sha256 must still match (a label
of a response that has since changed is stale and left out, never attached to other text).

Used by `score validate --gold` (agreement per scorer with the human labels) and
`score train-classifier --data` (labels as training rows).
"""

from __future__ import annotations

import datetime as _dt
import hashlib
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from refusalscope.errors import UserError
from refusalscope.fileio import append_jsonl, read_jsonl

LABELS = ("refused", "complied", "degenerate")
SKIP = "skip"
KEYS = {"r": "refused", "c": "complied", "d": "degenerate", "s": SKIP}
REQUIRED = ("prompt_id", "run", "response_sha256", "label", "labeller", "time")


def response_hash(response: str) -> str:
    """sha256 (hex) of a response's UTF-8 text: ties a label to the exact text labelled."""
    return hashlib.sha256(response.encode("utf-8")).hexdigest()


@dataclass(frozen=True)
class HumanLabel:
    """One label as given. `run` is the run folder's name (its id)."""

    prompt_id: str
    run: str
    response_sha256: str
    label: str
    labeller: str
    time: str
    run_path: str = ""  # where the run folder was when labelled ("" : under paths.runs_dir())

    def __post_init__(self) -> None:
        if self.label not in (*LABELS, SKIP):
            raise UserError(f"label {self.label!r} is not one of {', '.join((*LABELS, SKIP))}")
        if not self.labeller.strip():
            raise UserError("the labeller name is empty: pass --labeller NAME")

    @property
    def key(self) -> tuple[str, str, str]:
        """What a label is of: (run, prompt id, response hash)."""
        return (self.run, self.prompt_id, self.response_sha256)

    def to_dict(self) -> dict[str, Any]:
        return {k: getattr(self, k) for k in (*REQUIRED, "run_path")}


def now() -> str:
    return _dt.datetime.now(_dt.UTC).isoformat(timespec="seconds")


def append_label(path: Path, label: HumanLabel, extra: dict[str, Any] | None = None) -> None:
    """Append one label line (fsynced) to `path`, creating the folder if needed."""
    path.parent.mkdir(parents=True, exist_ok=True)
    append_jsonl(path, {**(extra or {}), **label.to_dict()})


def is_labels_file(path: Path) -> bool:
    """Whether a JSONL file's first row looks like a labels file (has `response_sha256`)."""
    if path.suffix.lower() != ".jsonl" or not path.is_file():
        return False
    with open(path, encoding="utf-8") as f:
        first = f.readline()
    return '"response_sha256"' in first and '"prompt_id"' in first


def read_labels(path: Path, labeller: str | None = None) -> list[HumanLabel]:
    """The file's labels, the last one per (run, prompt id, hash, labeller), in file order of
    their last line; `labeller` keeps only that labeller's. A missing file is an empty list."""
    path = Path(path)
    if not path.exists():
        return []
    last: dict[tuple[str, str, str, str], HumanLabel] = {}
    for i, row in enumerate(read_jsonl(path), 1):
        missing = [k for k in REQUIRED if k not in row]
        if missing:
            raise UserError(f"line {i} of {path} is not a label (no {missing[0]!r}); "
                            "give a file written by `refusalscope label`")
        lab = HumanLabel(**{k: str(row[k]) for k in REQUIRED},
                         run_path=str(row.get("run_path") or ""))
        if labeller is None or lab.labeller == labeller:
            k = (*lab.key, lab.labeller)
            last.pop(k, None)
            last[k] = lab
    return list(last.values())


@dataclass(frozen=True)
class Joined:
    """A human label with the texts it was given on."""

    label: HumanLabel
    prompt: str
    response: str


def join_labels(labels: Iterable[HumanLabel], *, skip: bool = False
                ) -> tuple[list[Joined], int]:
    """Labels joined with their run's prompt and response; returns (joined, n_stale) where a
    stale label's response no longer hashes the same (or its row is gone). `skip` labels are
    dropped unless `skip=True`. A run that cannot be opened is a UserError."""
    from refusalscope.runs import Run
    from refusalscope.paths import runs_dir

    texts: dict[str, dict[str, tuple[str, str]]] = {}
    out, stale = [], 0
    for lab in labels:
        if lab.label == SKIP and not skip:
            continue
        if lab.run not in texts:
            where = Path(lab.run_path) if lab.run_path else runs_dir() / lab.run
            if not where.is_dir():
                where = runs_dir() / lab.run
            texts[lab.run] = _texts(Run.open(where).path)
        got = texts[lab.run].get(lab.prompt_id)
        if got is None or response_hash(got[1]) != lab.response_sha256:
            stale += 1
            continue
        out.append(Joined(lab, got[0], got[1]))
    return out, stale


def _texts(run_path: Path) -> dict[str, tuple[str, str]]:
    gen = run_path / "generations.jsonl"
    if not gen.is_file():
        raise UserError(f"run {run_path.name} has no generations.jsonl to join labels with")
    return {str(r["id"]): (str(r.get("prompt", "")), str(r.get("response", "")))
            for r in read_jsonl(gen)}


def training_examples(path: Path) -> list[Any]:
    """A labels file as classifier training rows (`scoring.labelled.Example`): refused and
    complied as such, degenerate as the outcome head's `offtopic` (not refused, no answer to
    the request); skips and stale labels are left out."""
    from refusalscope.scoring.labelled import Example, group_of

    joined, _ = join_labels(read_labels(path))
    return [Example(j.prompt, j.response, j.label.label == "refused", f"labels:{path.name}",
                    group_of(j.prompt),
                    outcome="offtopic" if j.label.label == "degenerate" else "")
            for j in joined]
