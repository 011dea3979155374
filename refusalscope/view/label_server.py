"""`refusalscope label`: a local page for labelling a stratified sample of responses by hand.

The sample is drawn as `score validate` draws it (`scoring.validate.stratified_sample`: by
model, attack and prompt label, seeded). The page never receives the scorer's label of a
response before the human has labelled it (no anchoring): `/api/items` holds texts only, and
the scorer's label comes back in the answer to `/api/label`. Each label is appended and
fsynced to the labels file (`refusalscope.labels`) before the page moves on, so a closed tab
or a killed server loses nothing, and a restart with the same options resumes at the first
response this labeller has not labelled.

The server binds 127.0.0.1 only and serves one user; it is the standard library's
`ThreadingHTTPServer`, with a lock around the file.
"""

from __future__ import annotations

import json
import threading
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

from refusalscope.errors import UserError
from refusalscope.labels import KEYS, HumanLabel, append_label, now, read_labels, response_hash

LOOPBACK = "127.0.0.1"


@dataclass(frozen=True)
class LabelConfig:
    """What to label and where the labels go."""

    runs: tuple[str, ...]
    out: str
    labeller: str
    sample: int = 200
    seed: int = 0

    def __post_init__(self) -> None:
        object.__setattr__(self, "runs", tuple(self.runs))
        if not self.runs:
            raise UserError("give at least one run to label")
        if self.sample < 1:
            raise UserError(f"--sample must be at least 1 (got {self.sample})")
        if not self.labeller.strip():
            raise UserError("--labeller must not be empty")


@dataclass
class LabelSession:
    """The sample, the labels file and what this labeller has labelled (key -> label)."""

    cfg: LabelConfig
    items: list[Any]  # scoring.validate.Sampled
    run_paths: dict[str, str]
    cells: dict[str, str] = field(default_factory=dict)  # run id -> attack cell (view.rows)
    done: dict[tuple[str, str, str], str] = field(default_factory=dict)
    lock: threading.Lock = field(default_factory=threading.Lock)

    @property
    def path(self) -> Path:
        return Path(self.cfg.out)

    def key(self, i: int) -> tuple[str, str, str]:
        s = self.items[i]
        return (s.run, s.id, response_hash(s.response))

    def first_open(self) -> int:
        """Index of the first item not labelled yet (len(items) when all are)."""
        return next((i for i in range(len(self.items)) if self.key(i) not in self.done),
                    len(self.items))

    def public_items(self) -> list[dict[str, Any]]:
        """What the page may see: texts and ids, never the scorer's label."""
        return [{"i": i, "run": s.run, "id": s.id, "model": s.model, "attack": s.attack,
                 "cell": self.cells.get(s.run, s.attack), "label": s.label, "prompt": s.prompt, "response": s.response,
                 "done": self.done.get(self.key(i))} for i, s in enumerate(self.items)]

    def give(self, i: int, label: str) -> dict[str, Any]:
        """Record a label for item `i` (appended, fsynced) and reveal the scorer's label."""
        if not 0 <= i < len(self.items):
            raise UserError(f"no item {i}")
        s = self.items[i]
        run, pid, h = self.key(i)
        lab = HumanLabel(prompt_id=pid, run=run, response_sha256=h, label=label,
                         labeller=self.cfg.labeller, time=now(), run_path=self.run_paths[run])
        with self.lock:
            append_label(self.path, lab, {"model": s.model, "attack": s.attack,
                                          "cell": self.cells.get(run), "prompt_label": s.label})
            self.done[lab.key] = label
        return {"ok": True, "i": i, "label": label, "labelled": len(self.done),
                "scorer": {"refused": s.refused, "outcome": s.outcome,
                           "p_refused": s.p_refused, "scores_file": s.scores_file}}


def prepare(cfg: LabelConfig) -> LabelSession:
    """Load the runs, draw the sample and read what this labeller already labelled."""
    from refusalscope.runs import Run
    from refusalscope.scoring.validate import load_responses, stratified_sample

    from refusalscope.view.rows import find_targets, run_info

    items, paths, cells = [], {}, {}
    for r in find_targets(cfg.runs)[0]:  # a study or a folder of runs: its generate runs
        run = Run.open(r)
        paths[run.id] = str(run.path.resolve())
        cells[run.id] = run_info(run)["cell"]
        items += load_responses(run.path)
    sample = stratified_sample(items, cfg.sample, cfg.seed)
    session = LabelSession(cfg, sample, paths, cells)
    for lab in read_labels(session.path, labeller=cfg.labeller):
        session.done[lab.key] = lab.label
    return session


def _handler(session: LabelSession, page: bytes) -> type[BaseHTTPRequestHandler]:
    class Handler(BaseHTTPRequestHandler):
        def log_message(self, *args: Any) -> None:  # keep the terminal for our own lines
            pass

        def _send(self, code: int, body: bytes, ctype: str) -> None:
            self.send_response(code)
            self.send_header("Content-Type", ctype)
            self.send_header("Content-Length", str(len(body)))
            self.send_header("Cache-Control", "no-store")
            self.end_headers()
            self.wfile.write(body)

        def _json(self, code: int, obj: Any) -> None:
            self._send(code, json.dumps(obj).encode(), "application/json")

        def do_GET(self) -> None:  # noqa: N802 (http.server's name)
            if self.path in ("/", "/index.html"):
                self._send(200, page, "text/html; charset=utf-8")
            elif self.path == "/api/items":
                self._json(200, {"items": session.public_items(), "start": session.first_open(),
                                 "labeller": session.cfg.labeller, "file": str(session.path),
                                 "keys": KEYS})
            else:
                self._send(404, b"not found", "text/plain")

        def do_POST(self) -> None:  # noqa: N802
            if self.path != "/api/label":
                self._send(404, b"not found", "text/plain")
                return
            try:
                n = int(self.headers.get("Content-Length") or 0)
                req = json.loads(self.rfile.read(n) or b"{}")
                self._json(200, session.give(int(req["i"]), str(req["label"])))
            except (UserError, KeyError, ValueError, TypeError) as e:
                self._json(400, {"ok": False, "error": str(e)})

    return Handler


def label_page() -> bytes:
    """The labelling page: HTML with its script and style inlined from `view/static/`."""
    from refusalscope.view.site import static_text

    return (static_text("label.html").replace("/*CSS*/", static_text("view.css"))
            .replace("/*JS*/", static_text("label.js")).encode("utf-8"))


def make_server(session: LabelSession, port: int = 0) -> ThreadingHTTPServer:
    """A loopback server for `session` (port 0: a free one; see `server.server_address`)."""
    try:
        return ThreadingHTTPServer((LOOPBACK, port), _handler(session, label_page()))
    except OSError as e:
        raise UserError(f"cannot listen on {LOOPBACK}:{port}: {e.strerror}; "
                        "pass another --port") from None


def summary(session: LabelSession) -> str:
    """One line: how many are labelled and where the page starts."""
    n = len(session.items)
    start = session.first_open()
    return (f"{n - sum(session.key(i) not in session.done for i in range(n))} of {n} labelled "
            f"by {session.cfg.labeller} in {session.path}; "
            + (f"starting at row {start + 1}" if start < n else "all labelled"))

