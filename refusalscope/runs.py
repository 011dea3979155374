"""Run folders: one folder per command invocation, with a manifest written atomically.

Layout: `artifacts/runs/<UTC timestamp>_<command>_<model>_<short id>/manifest.json` plus the
command's own files (e.g. `generations.jsonl`, `scores.jsonl`, `metrics.json`). A run is
append-only: later stages add files beside earlier ones and never rewrite them.
"""

from __future__ import annotations

import datetime as _dt
import hashlib
import json
import platform
import re
import subprocess
from collections.abc import Iterator
from contextlib import contextmanager
from contextvars import ContextVar
from dataclasses import dataclass, field
from importlib import metadata
from pathlib import Path
from typing import Any

from refusalscope.errors import UserError
from refusalscope.fileio import atomic_write_json
from refusalscope.paths import runs_dir

SCHEMA_VERSION = 1
MANIFEST = "manifest.json"
CONTENT_WARNING = (
    "CONTENT WARNING: this run holds model completions to harmful requests. "
    "They are research artefacts; do not publish them without review."
)
# `--out DIR` of the CLI: the next `Run.create` in this context makes exactly this folder.
_NEXT_RUN_AT: ContextVar[Path | None] = ContextVar("next_run_at", default=None)
_PACKAGES = ("refusalscope", "torch", "transformers", "peft", "sentence-transformers",
             "transformer-lens", "nnsight", "h5py", "gguf")


def package_versions() -> dict[str, str | None]:
    out: dict[str, str | None] = {"python": platform.python_version()}
    for name in _PACKAGES:
        try:
            out[name] = metadata.version(name)
        except metadata.PackageNotFoundError:
            out[name] = None
    return out


def git_revision() -> str | None:
    """The source tree's commit (with `-dirty` if it has uncommitted changes), if in a checkout."""
    src = Path(__file__).resolve().parent
    try:
        rev = subprocess.run(["git", "-C", str(src), "rev-parse", "HEAD"], capture_output=True,
                             text=True, timeout=5)
        if rev.returncode != 0:
            return None
        dirty = subprocess.run(["git", "-C", str(src), "status", "--porcelain", "--untracked-files=no"],
                               capture_output=True, text=True, timeout=5)
        return rev.stdout.strip() + ("-dirty" if dirty.stdout.strip() else "")
    except (OSError, subprocess.SubprocessError):
        return None


def config_id(config: dict[str, Any]) -> str:
    """Short content hash of a config (sorted JSON)."""
    blob = json.dumps(config, sort_keys=True, default=str).encode()
    return hashlib.sha256(blob).hexdigest()[:8]


def _slug(text: str) -> str:
    return re.sub(r"[^A-Za-z0-9.\-]+", "-", text).strip("-")[:48] or "x"


_RUN_NAME = re.compile(r"^\d{8}T\d+Z_(?P<command>[^_]+)_(?P<model>.+)_[0-9a-f]{8}$")


def model_slug(model: str) -> str:
    """The model part of a run name: a registry name or hub id as it is; a model saved inside a
    run (e.g. a TAR-defended `RUN/model`) as `<that run's model>+<its command>`; another local
    path by its last component."""
    path = Path(model).expanduser()
    looks_local = model.startswith(("/", ".", "~")) or path.exists()
    if not looks_local:
        return _slug(model)
    for folder in (path, *path.parents[:2]):
        m = _RUN_NAME.match(folder.name)
        if m:
            return _slug(f"{m['model']}+{m['command']}")
    return _slug(path.stem if path.suffix == ".gguf" else path.name)


@dataclass
class Manifest:
    """What a run is, how it was made, and whether it finished."""

    command: str
    config: dict[str, Any]
    model: str | None = None
    seed: int | None = None
    input_runs: list[str] = field(default_factory=list)
    status: str = "started"  # started -> success | error
    created: str = ""
    finished: str | None = None
    error: str | None = None
    harmful_content: bool = False
    content_warning: str | None = None
    packages: dict[str, str | None] = field(default_factory=dict)
    git_revision: str | None = None
    schema_version: int = SCHEMA_VERSION
    extra: dict[str, Any] = field(default_factory=dict)

    def to_dict(self) -> dict[str, Any]:
        return {k: getattr(self, k) for k in self.__dataclass_fields__}

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> Manifest:
        known = {k: v for k, v in d.items() if k in cls.__dataclass_fields__}
        return cls(**known)


class Run:
    """A run folder. Create with `Run.create(...)`, open an existing one with `Run.open(path)`."""

    def __init__(self, path: Path, manifest: Manifest):
        self.path = Path(path)
        self.manifest = manifest

    @property
    def id(self) -> str:
        return self.path.name

    @classmethod
    def create(cls, command: str, config: dict[str, Any], *, model: str | None = None,
               seed: int | None = None, input_runs: list[str] | None = None,
               harmful_content: bool = False, root: Path | None = None) -> Run:
        stamp = _dt.datetime.now(_dt.timezone.utc).strftime("%Y%m%dT%H%M%S%fZ")
        name = f"{stamp}_{_slug(command)}_{model_slug(model or 'none')}_{config_id(config)}"
        path = (root or runs_dir()) / name
        if (at := _NEXT_RUN_AT.get()) is not None:
            _NEXT_RUN_AT.set(None)  # only the command's own run goes there
            path = at
            path.mkdir(parents=True, exist_ok=True)
        else:
            path.mkdir(parents=True, exist_ok=False)
        manifest = Manifest(
            command=command, config=config, model=model, seed=seed,
            input_runs=list(input_runs or []), created=utc_now(),
            harmful_content=harmful_content,
            content_warning=CONTENT_WARNING if harmful_content else None,
            packages=package_versions(), git_revision=git_revision(),
        )
        run = cls(path, manifest)
        run.save()
        return run

    @staticmethod
    @contextmanager
    def at(out: str | Path | None) -> Iterator[None]:
        """Inside this block the next `Run.create` makes the folder `out` (new or empty) instead
        of a new one under `runs_dir()`; `None` changes nothing. Used for the CLI's `--out DIR`.

        Example:
            with Run.at("runs/base"):
                run = run_generate(cfg)   # run.path == Path("runs/base")
        """
        if out is None:
            yield
            return
        p = Path(out).expanduser()
        if p.exists() and (not p.is_dir() or any(p.iterdir())):
            raise UserError(f"--out {out}: exists and is not an empty folder; runs are never "
                            "overwritten (pick a new folder)")
        token = _NEXT_RUN_AT.set(p)
        try:
            yield
        finally:
            _NEXT_RUN_AT.reset(token)

    @classmethod
    def open(cls, path: str | Path) -> Run:
        p = Path(path)
        if not p.is_dir() and not p.is_absolute() and (runs_dir() / p).is_dir():
            p = runs_dir() / p  # a bare run id
        mf = p / MANIFEST
        if not mf.is_file():
            raise UserError(f"not a run folder (no {MANIFEST}): {path}")
        try:
            data = json.loads(mf.read_text(encoding="utf-8"))
        except (json.JSONDecodeError, UnicodeDecodeError) as e:
            raise UserError(f"corrupt manifest in {p}: {e}") from None
        return cls(p, Manifest.from_dict(data))

    def save(self) -> None:
        atomic_write_json(self.path / MANIFEST, self.manifest.to_dict())

    def mark_harmful(self) -> None:
        self.manifest.harmful_content = True
        self.manifest.content_warning = CONTENT_WARNING
        self.save()

    def finish(self, status: str = "success", error: str | None = None) -> None:
        self.manifest.status = status
        self.manifest.error = error
        self.manifest.finished = utc_now()
        self.save()

    @contextmanager
    def guard(self) -> Iterator[Run]:
        """Mark the run `error` (with `Type: message`, at most 500 characters) if the block
        raises anything, Ctrl-C included, and re-raise; a clean exit leaves the status as it is.

        Example:
            with run.guard():
                write_outputs(run, ...)
            run.finish("success")
        """
        try:
            yield self
        except BaseException as e:
            self.finish("error", f"{type(e).__name__}: {e}"[:500])
            raise

    def file(self, name: str) -> Path:
        return self.path / name

    def new_file(self, stem: str, suffix: str) -> Path:
        """`stem.suffix`, or `stem.2.suffix`, `stem.3.suffix`, ... if taken: never overwrite."""
        p = self.path / f"{stem}{suffix}"
        i = 2
        while p.exists():
            p = self.path / f"{stem}.{i}{suffix}"
            i += 1
        return p


def open_unfinished(path: str | Path, command: str) -> Run:
    """A run of `command` that has not finished, to resume; anything else is a UserError."""
    run = Run.open(path)
    if run.manifest.command != command:
        raise UserError(f"{run.id} is a {run.manifest.command!r} run, not a {command} run")
    if run.manifest.status == "success":
        raise UserError(f"{run.id} already finished: nothing to resume")
    return run


def utc_now() -> str:
    """The current UTC time as ISO 8601 to the second, e.g. `2026-12-07T05:07:19+00:00`."""
    return _dt.datetime.now(_dt.UTC).isoformat(timespec="seconds")
