"""Run a study's nodes in dependency order, in this process, with bounded retries.

Layout: `artifacts/studies/<spec name>/` holds `spec.json` (the spec as last run) and one folder
per node, `nodes/<node id>/`, which is the node's `$REFUSALSCOPE_ARTIFACTS` while it runs. A node
is done when `node.json` (written atomically, last) says so, with its output paths relative to
the study folder so the folder can be moved (`portable.py`); `attempts.jsonl` logs every try
with its error. SIGKILL at any moment leaves finished nodes untouched and the interrupted one
to be resumed by the next `study run` (see `study.nodes`). One `study run` at a time per study
(an exclusive lock on `study.lock`); `study status` reads without the lock.

A node that fails `max_retries + 1` times is recorded as failed and the run goes on with every
node that does not depend on it; the nodes downstream are reported as blocked, never dropped.
"""

from __future__ import annotations

import fcntl
import json
import logging
import os
import socket
import traceback
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from refusalscope.errors import UserError
from refusalscope.fileio import append_jsonl, atomic_write_json, read_jsonl
from refusalscope.runs import utc_now
from refusalscope.study.graph import Node
from refusalscope.study.nodes import NODE_FILE, NODE_KINDS
from refusalscope.study.portable import MARK, absolute_outputs, relative_outputs

log = logging.getLogger(__name__)
ATTEMPTS = "attempts.jsonl"
RUNNING = "running.json"


def study_dir(name: str, root: Path | None = None) -> Path:
    """`<artifacts>/studies/<name>/`."""
    from refusalscope.paths import artifacts_dir

    return (root or artifacts_dir()) / "studies" / name


def node_dir(study: Path, node: Node) -> Path:
    return study / "nodes" / node.id


@dataclass
class Outcome:
    """What became of the nodes of one `study run`."""

    done: list[str] = field(default_factory=list)  # finished in this run
    skipped: list[str] = field(default_factory=list)  # finished before
    failed: dict[str, str] = field(default_factory=dict)  # node id -> last error
    blocked: dict[str, str] = field(default_factory=dict)  # node id -> failed input


def record(study: Path, node: Node) -> dict[str, Any] | None:
    """The success record of a node, or None if it is not done. Output paths are absolute,
    under `study` as it is now (`node.json` keeps them relative: see `portable`)."""
    f = node_dir(study, node) / NODE_FILE
    if not f.is_file():
        return None
    return absolute_outputs(json.loads(f.read_text(encoding="utf-8")), study)


def node_state(study: Path, node: Node) -> str:
    """done | running | failed | pending."""
    work = node_dir(study, node)
    if (work / NODE_FILE).is_file():
        return "done"
    run = work / RUNNING
    if run.is_file():
        info = json.loads(run.read_text(encoding="utf-8"))
        if info.get("host") == socket.gethostname() and _alive(info.get("pid", -1)):
            return "running"
    tries = read_jsonl(work / ATTEMPTS) if (work / ATTEMPTS).is_file() else []
    ends = [t for t in tries if t.get("event") == "end"]
    if ends and ends[-1].get("status") == "error":
        return "failed"
    return "pending"


def last_error(study: Path, node: Node) -> str | None:
    f = node_dir(study, node) / ATTEMPTS
    ends = [t for t in read_jsonl(f) if t.get("event") == "end"] if f.is_file() else []
    return ends[-1].get("error") if ends and ends[-1].get("status") == "error" else None


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except (ProcessLookupError, PermissionError, OSError):
        return False
    return True


@contextmanager
def _artifacts(path: Path) -> Iterator[None]:
    """Point `$REFUSALSCOPE_ARTIFACTS` at a node's folder while it runs."""
    old = os.environ.get("REFUSALSCOPE_ARTIFACTS")
    os.environ["REFUSALSCOPE_ARTIFACTS"] = str(path)
    try:
        yield
    finally:
        if old is None:
            os.environ.pop("REFUSALSCOPE_ARTIFACTS", None)
        else:
            os.environ["REFUSALSCOPE_ARTIFACTS"] = old


def execute_node(study: Path, node: Node, inputs: dict[str, dict[str, Any]],
                 max_retries: int = 2) -> dict[str, Any]:
    """Run one node to success (up to `max_retries` retries); returns its success record, or a
    record with `status: "error"` and the last error. Exceptions never escape: Ray and the local
    loop both get a record. A node already done returns its record untouched."""
    done = record(study, node)
    if done is not None:
        return {**done, "skipped": True}
    work = node_dir(study, node)
    work.mkdir(parents=True, exist_ok=True)
    runner = NODE_KINDS[node.kind]
    error = ""
    for attempt in range(max_retries + 1):
        atomic_write_json(work / RUNNING, {"pid": os.getpid(), "host": socket.gethostname()})
        append_jsonl(work / ATTEMPTS, {"event": "start", "attempt": attempt, "at": utc_now()})
        try:
            with _artifacts(work):
                outputs = runner(node, inputs, work)
        except Exception as e:  # noqa: BLE001 - recorded and retried, never swallowed
            error = " ".join(f"{type(e).__name__}: {e}".split())[:500]
            log.warning("node %s (%s) attempt %d failed: %s", node.id, node.label, attempt, error)
            append_jsonl(work / ATTEMPTS, {"event": "end", "attempt": attempt, "at": utc_now(),
                                           "status": "error", "error": error,
                                           "traceback": traceback.format_exc()[-4000:]})
            continue
        finally:
            (work / RUNNING).unlink(missing_ok=True)
        rel, keys = relative_outputs(outputs, study)
        rec = {**node.to_dict(), "status": "success", "outputs": rel, "paths": MARK,
               "relative": keys, "finished": utc_now(), "attempts": attempt + 1}
        atomic_write_json(work / NODE_FILE, rec)  # the moment the node counts as done
        append_jsonl(work / ATTEMPTS, {"event": "end", "attempt": attempt, "at": utc_now(),
                                       "status": "success"})
        return absolute_outputs(rec, study)
    return {**node.to_dict(), "status": "error", "error": error}


@contextmanager
def study_lock(study: Path) -> Iterator[None]:
    """One `study run` per study at a time; a second gets a one-line error."""
    study.mkdir(parents=True, exist_ok=True)
    with open(study / "study.lock", "a") as fh:
        try:
            fcntl.flock(fh, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            raise UserError(f"another `study run` is running on {study}; wait for it or "
                            "check `study status`") from None
        try:
            yield
        finally:
            fcntl.flock(fh, fcntl.LOCK_UN)


def write_spec(study: Path, spec_dict: dict[str, Any], nodes: Sequence[Node]) -> None:
    atomic_write_json(study / "spec.json", {"spec": spec_dict,
                                            "nodes": [n.to_dict() for n in nodes]})


def run_local(study: Path, nodes: Sequence[Node], *, max_retries: int = 2,
              on_node: Callable[[Node, dict[str, Any]], None] | None = None) -> Outcome:
    """Run `nodes` (in dependency order) one after the other in this process."""
    out = Outcome()
    results: dict[str, dict[str, Any]] = {}
    for node in nodes:
        bad = [d for d in node.inputs.values() if results.get(d, {}).get("status") != "success"]
        if bad:
            out.blocked[node.id] = bad[0]
            results[node.id] = {"status": "blocked"}
            continue
        ins = {role: results[d]["outputs"] for role, d in node.inputs.items()}
        rec = execute_node(study, node, ins, max_retries)
        tally(out, node, rec)
        results[node.id] = rec
        if on_node is not None:
            on_node(node, rec)
    return out


def tally(out: Outcome, node: Node, rec: dict[str, Any]) -> None:
    if rec["status"] != "success":
        out.failed[node.id] = rec.get("error", "")
    elif rec.get("skipped"):
        out.skipped.append(node.id)
    else:
        out.done.append(node.id)
