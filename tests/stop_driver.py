"""Run `refusalscope ARGS...` in this process, stopping itself (SIGSTOP) at one named moment.

Usage: `python stop_driver.py POINT ARGS...`. The library runs unchanged; a wrapper around one
of its file writes sends this process SIGSTOP right after (or, for `score-unrecorded`, right
before) that write, so a test can wait for the stopped state, look at the files, and SIGKILL
the process exactly mid-node instead of at a guessed time. POINT is one of:

- `generate-partial`: the first `generations.jsonl` holds 2 rows (of more): a generate node
  half done;
- `lora-cell`: a LoRA trajectory has finished its first shorter cell (a cell run written from
  the trajectory), the longest cell still training: an attack node half done;
- `score-unrecorded`: a score node's scoring is written into the generate run but its
  `node.json` is not (the record the executor writes last);
- `none`: no stop.
"""

from __future__ import annotations

import os
import signal
import sys
from pathlib import Path
from typing import Any


def _stop() -> None:
    os.kill(os.getpid(), signal.SIGSTOP)


def _install(point: str) -> None:
    if point == "generate-partial":
        from refusalscope import fileio

        real_append = fileio.append_jsonl
        state = {"stopped": False}

        def append_jsonl(path: Any, row: Any) -> None:
            real_append(path, row)
            p = Path(path)
            if not state["stopped"] and p.name == "generations.jsonl" \
                    and len(p.read_text().splitlines()) == 2:
                state["stopped"] = True
                _stop()

        fileio.append_jsonl = append_jsonl
    elif point == "lora-cell":
        from refusalscope.attacks import grid

        real_snapshot = grid.write_snapshot

        def write_snapshot(*args: Any, **kwargs: Any) -> None:
            real_snapshot(*args, **kwargs)
            _stop()

        grid.write_snapshot = write_snapshot
    elif point == "score-unrecorded":
        from refusalscope.study import executor

        real_write = executor.atomic_write_json

        def atomic_write_json(path: Any, obj: Any, *args: Any, **kwargs: Any) -> None:
            if Path(path).name == "node.json" and obj.get("kind") == "score":
                _stop()
            real_write(path, obj, *args, **kwargs)

        executor.atomic_write_json = atomic_write_json
    elif point != "none":
        raise SystemExit(f"unknown stop point {point!r}")


def process_state(pid: int) -> str:
    """The one-letter state of a process from /proc (T: stopped, Z: exited)."""
    stat = Path(f"/proc/{pid}/stat").read_text()
    return stat[stat.rindex(")") + 2]


if __name__ == "__main__":
    _install(sys.argv[1])
    from refusalscope.cli.app import app

    app(args=sys.argv[2:], prog_name="refusalscope")
