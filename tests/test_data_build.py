"""`data build`: deterministic, disjoint, stratified splits; the harmless set; the report."""

from __future__ import annotations

import json
import re
from pathlib import Path

import pytest

from refusalscope import pypkg
from refusalscope.data import build as b
from refusalscope.data import harmless
from refusalscope.data.dedup import exact_key
from refusalscope.data.sources import SOURCE_NAMES
from refusalscope.errors import UserError

FILES = (b.HARMFUL_FILE, b.HARMLESS_FILE, b.REPORT_FILE)


def _build_in(home: Path, cfg: b.BuildConfig) -> dict[str, bytes]:
    with pytest.MonkeyPatch.context() as mp:
        # module fixtures run before conftest's per-test isolation: pin the shared wheelhouse
        mp.setenv("REFUSALSCOPE_WHEELHOUSE", str(pypkg.wheels_dir()))
        mp.setenv("REFUSALSCOPE_HOME", str(home))
        b.build(cfg)
    return {name: (home / "data" / "built" / name).read_bytes() for name in FILES}


@pytest.fixture(scope="module")
def builds(tmp_path_factory: pytest.TempPathFactory) -> dict[str, dict[str, bytes]]:
    """Seed 0 twice (separate caches, so the second also pulls afresh) and seed 1 once."""
    return {"a": _build_in(tmp_path_factory.mktemp("a"), b.BuildConfig(seed=0)),
            "b": _build_in(tmp_path_factory.mktemp("b"), b.BuildConfig(seed=0)),
            "s1": _build_in(tmp_path_factory.mktemp("s1"), b.BuildConfig(seed=1))}


def _rows(data: bytes) -> list[dict]:
    return [json.loads(line) for line in data.decode().splitlines()]


def test_same_seed_is_byte_identical_other_seed_differs(builds: dict) -> None:
    for name in FILES:
        assert builds["a"][name] == builds["b"][name], name
    assert builds["a"][b.HARMFUL_FILE] != builds["s1"][b.HARMFUL_FILE]
    assert builds["a"][b.HARMLESS_FILE] != builds["s1"][b.HARMLESS_FILE]
    # a different seed reshuffles the splits but keeps the same pool
    ids = [sorted(r["id"] for r in _rows(builds[k][b.HARMFUL_FILE])) for k in ("a", "s1")]
    assert ids[0] == ids[1]


@pytest.mark.parametrize("name", [b.HARMFUL_FILE, b.HARMLESS_FILE])
def test_no_prompt_in_two_splits(builds: dict, name: str) -> None:
    for key in ("a", "s1"):
        rows = _rows(builds[key][name])
        by_text: dict[str, set[str]] = {}
        for r in rows:
            by_text.setdefault(exact_key(r["prompt"]), set()).add(r["split"])
        assert all(len(s) == 1 for s in by_text.values())
        assert len(by_text) == len(rows)  # no exact duplicate at all
        assert len({r["id"] for r in rows}) == len(rows)


def test_harmful_and_harmless_do_not_overlap(builds: dict) -> None:
    harmful = {exact_key(r["prompt"]) for r in _rows(builds["a"][b.HARMFUL_FILE])}
    assert not harmful & {exact_key(r["prompt"]) for r in _rows(builds["a"][b.HARMLESS_FILE])}


def test_rows_splits_and_strata(builds: dict) -> None:
    rows = _rows(builds["a"][b.HARMFUL_FILE])
    assert {r["label"] for r in rows} == {"harmful"}
    assert [r["split"] for r in rows] == sorted((r["split"] for r in rows), key=b.SPLITS.index)
    for split in b.SPLITS:  # every split holds every source
        assert {r["source"] for r in rows if r["split"] == split} == set(SOURCE_NAMES)
    n = {s: sum(r["split"] == s for r in rows) for s in b.SPLITS}
    # the pinned sources give exact sizes: 1514 kept harmful, 797 harmless (seed 0, 50/20/30
    # per source or topic stratum, so the totals differ from split_counts of the whole)
    assert n == {"attack-train": 758, "direction": 302, "eval": 454}
    adv_train = [r for r in rows if r["source"] == "advbench" and r["split"] == "attack-train"]
    assert adv_train and all(r["target"] and r["target"].startswith("Sure, here")
                             for r in adv_train)
    hl = _rows(builds["a"][b.HARMLESS_FILE])
    assert {s: sum(r["split"] == s for r in hl) for s in b.SPLITS} == \
        {"attack-train": 403, "direction": 158, "eval": 236}
    topics = {r["category"] for r in hl}
    for split in b.SPLITS:
        assert {r["category"] for r in hl if r["split"] == split} == topics


def test_report(builds: dict) -> None:
    rep = json.loads(builds["a"][b.REPORT_FILE])
    assert rep["config"]["seed"] == 0
    h = rep["counts"]["harmful"]
    assert h["raw"] == 1626 and h["kept"] == h["raw"] - rep["drops"]["harmful"]["dropped"] == 1514
    assert rep["counts"]["harmless"]["raw"] == rep["counts"]["harmless"]["kept"] == 797
    assert sum(h[s]["total"] for s in b.SPLITS) == h["kept"]
    drops = rep["drops"]["harmful"]
    assert drops["by_reason_and_source"]["exact"]["strongreject"] == 25  # the AdvBench repeats
    assert drops["dropped_source_to_kept_source"]["strongreject->advbench"] >= 25
    assert len(drops["rows"]) == drops["dropped"]
    for label in ("harmful", "harmless"):
        stats = rep["lengths"][label]["all"]
        assert set(stats) == {"n", "mean", "min", "p10", "q1", "median", "q3", "p90", "max"}
    # length-matched: medians and quartiles within 2 words of each other
    hs, ls = rep["lengths"]["harmful"]["all"], rep["lengths"]["harmless"]["all"]
    for k in ("q1", "median", "q3"):
        assert abs(hs[k] - ls[k]) <= 2, k
    assert rep["sources"]["advbench"]["package"] == "prompt-security-fuzzer==2.1.1"
    assert rep["sources"][harmless.SOURCE]["members"][harmless.RESOURCE] == \
        harmless.resource_sha256()
    assert not re.search(r"\d{4}-\d\d-\d\dT\d\d:", builds["a"][b.REPORT_FILE].decode())


def test_harmless_set() -> None:
    rows = harmless.harmless_rows()
    assert len(rows) == 797  # the shipped resource, pinned by its sha256 in the build report
    assert len({exact_key(r["prompt"]) for r in rows}) == len(rows)
    assert len({r["category"] for r in rows}) == 33
    trigger = re.compile(r"\b(kill\w*|attack\w*|exploit\w*|bombs?|weapons?|guns?|drugs?|"
                         r"hack\w*|steal\w*|poison\w*|knife|blood|suicide|harm(s|ed|ful|ing)?|"
                         r"hurt|violen\w*|illegal|explosive\w*|murder\w*|die|death|dead)\b",
                         re.IGNORECASE)
    assert [r["prompt"] for r in rows if trigger.search(r["prompt"])] == []


def test_harmless_parse_errors() -> None:
    assert harmless.parse("# c\n## a\nx\n\n## b\ny\n") == [("a", "x"), ("b", "y")]
    with pytest.raises(ValueError, match="before any"):
        harmless.parse("orphan line\n")


@pytest.mark.parametrize(("n", "want"), [(0, [0, 0, 0]), (1, [1, 0, 0]), (3, [1, 1, 1]),
                                         (4, [2, 1, 1]), (10, [5, 2, 3]), (37, [19, 7, 11])])
def test_split_counts(n: int, want: list[int]) -> None:
    assert b.split_counts(n, (0.5, 0.2, 0.3)) == want


def test_length_stats() -> None:
    s = b.length_stats(["a b", "a b c d", "a", "a b c"])
    assert s == {"n": 4, "mean": 2.5, "min": 1, "p10": 1.3, "q1": 1.75, "median": 2.5,
                 "q3": 3.25, "p90": 3.7, "max": 4}
    assert b.length_stats([]) == {"n": 0}


def test_config_validation_and_round_trip() -> None:
    cfg = b.BuildConfig(seed=3, ratios=(0.6, 0.2, 0.2), sources=("advbench", "airt"))
    assert b.BuildConfig.from_dict(json.loads(json.dumps(cfg.to_dict()))) == cfg
    with pytest.raises(UserError, match="sum to 1"):
        b.BuildConfig(ratios=(0.5, 0.5, 0.5))
    with pytest.raises(UserError, match="3 positive"):
        b.BuildConfig(ratios=(1.0, 0.0, 0.0))
    with pytest.raises(UserError, match="near_dup"):
        b.BuildConfig(near_dup_threshold=0)
    with pytest.raises(UserError, match="unknown data source"):
        b.BuildConfig(sources=("alpaca",))


def test_corrupt_raw_file_is_user_error_and_keeps_built_files(tmp_path: Path) -> None:
    b.build(b.BuildConfig(sources=("airt",)))
    before = (b.built_dir() / b.HARMFUL_FILE).read_bytes()
    (tmp_path / "home" / "data" / "raw" / "airt.jsonl").write_text("{not json\n{}\n")
    with pytest.raises(UserError, match="corrupt"):
        b.build(b.BuildConfig(sources=("airt",)))
    assert (b.built_dir() / b.HARMFUL_FILE).read_bytes() == before
