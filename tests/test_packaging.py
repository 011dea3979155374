"""A normal (non-editable) install works: a wheel built from the source files holds every
package and data file, and the CLI installed from it runs in a fresh venv.

`scripts/setup.sh` installs with `-e`, which hides a package or data file missing from the
wheel (the `defend` command once was). The fresh venv is made with `--without-pip`; the wheel
goes in with this venv's pip (`--python`, `--no-deps`, `--no-index`), and the pinned
dependencies come from this venv's site-packages through a `.pth` path line (its own `.pth`
files, the editable install's finder among them, are not run from such a path).
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
import sysconfig
import zipfile
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]


def _tracked() -> list[str]:
    """The source files: tracked, plus new ones git does not ignore (work not yet committed)."""
    out = subprocess.run(["git", "ls-files", "-z", "--cached", "--others", "--exclude-standard"],
                         cwd=ROOT, capture_output=True, check=True)
    return sorted({p for p in out.stdout.decode().split("\0") if p and (ROOT / p).is_file()})


def _installed_name(path: str) -> str | None:
    """Where a tracked file lands in the wheel (`cli/x.py` -> `refusalscope/cli/x.py`)."""
    if path.startswith("refusalscope/"):
        return path
    if path.startswith("cli/"):
        return "refusalscope/" + path
    return None


@pytest.fixture(scope="module")
def wheel(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A wheel built from a copy of the source files only (no build isolation: offline)."""
    src = tmp_path_factory.mktemp("src")
    for rel in _tracked():
        (src / rel).parent.mkdir(parents=True, exist_ok=True)
        shutil.copy2(ROOT / rel, src / rel)
    dist = tmp_path_factory.mktemp("dist")
    subprocess.run([sys.executable, "-m", "pip", "wheel", "--no-deps", "--no-build-isolation",
                    "--no-index", "--disable-pip-version-check", "-q", "-w", str(dist), str(src)],
                   check=True, capture_output=True)
    (whl,) = dist.glob("refusalscope-*.whl")
    return whl


def test_wheel_holds_every_tracked_package_and_data_file(wheel: Path) -> None:
    want = {n for p in _tracked() if (n := _installed_name(p)) is not None}
    got = {n for n in zipfile.ZipFile(wheel).namelist() if not n.startswith("refusalscope-")}
    assert "refusalscope/defenses/tar.py" in want and "refusalscope/cli/defend.py" in want
    assert sorted(want - got) == []  # nothing left out (packages, resources, specs)
    assert sorted(got - want) == []  # and nothing else (caches, build leftovers) slipped in


def test_cli_runs_from_a_fresh_non_editable_install(wheel: Path, tmp_path: Path) -> None:
    env_dir = tmp_path / "venv"
    subprocess.run([sys.executable, "-m", "venv", "--without-pip", str(env_dir)], check=True)
    py = env_dir / "bin" / "python"
    site = Path(subprocess.run([str(py), "-c", "import sysconfig; print(sysconfig.get_paths()"
                                "['purelib'])"], capture_output=True, text=True,
                               check=True).stdout.strip())
    (site / "_deps_from_test_venv.pth").write_text(sysconfig.get_paths()["purelib"] + "\n")
    subprocess.run([sys.executable, "-m", "pip", "--python", str(py), "install", "--no-deps",
                    "--no-index", "--disable-pip-version-check", "-q", str(wheel)],
                   check=True, capture_output=True)
    env = {**os.environ, "REFUSALSCOPE_HOME": str(tmp_path / "home"),
           "REFUSALSCOPE_ARTIFACTS": str(tmp_path / "artifacts")}

    def run(*args: str) -> str:
        res = subprocess.run(args, cwd=tmp_path, env=env, capture_output=True, text=True)
        assert res.returncode == 0, (args, res.stdout[-2000:], res.stderr[-2000:])
        return res.stdout

    where = run(str(py), "-c", "import refusalscope.cli.defend, refusalscope.defenses.tar as t; "
                "print(t.__file__)")
    assert Path(where.strip()).is_relative_to(site)  # the wheel's copy, not the source tree
    cli = str(env_dir / "bin" / "refusalscope")
    assert "tar" in run(cli, "defend", "--help") and "steer" in run(cli, "defend", "--help")
    plan = run(cli, "study", "plan", "quickstart")
    assert "smollm2-135m" in plan and "total" in plan
