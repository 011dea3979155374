"""`load_split` over built data and `load_prompt_file` over users' files: results and errors."""

from __future__ import annotations

import json
import logging
import sys
import types
from pathlib import Path

import pandas as pd
import pytest

from refusalscope import pypkg
from refusalscope.data import build as b
from refusalscope.data.load import SPLITS, Prompt, load_prompt_file, load_split
from refusalscope.data.userfile import imported_path
from refusalscope.errors import UserError


@pytest.fixture(scope="module")
def built_home(tmp_path_factory: pytest.TempPathFactory) -> Path:
    home = tmp_path_factory.mktemp("home")
    with pytest.MonkeyPatch.context() as mp:
        mp.setenv("REFUSALSCOPE_WHEELHOUSE", str(pypkg.wheels_dir()))
        mp.setenv("REFUSALSCOPE_HOME", str(home))
        b.build(b.BuildConfig(seed=0))
    return home


@pytest.fixture
def built(built_home: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    monkeypatch.setenv("REFUSALSCOPE_HOME", str(built_home))
    return built_home


def test_load_split_order_and_fields(built: Path) -> None:
    rows = [json.loads(x) for x in (built / "data/built/harmful.jsonl").read_text().splitlines()]
    want = [r["id"] for r in rows if r["split"] == "eval"][:7]
    got = load_split("eval", n=7)
    assert [p.id for p in got] == want  # first n in built order
    assert all(isinstance(p, Prompt) and p.split == "eval" and p.label == "harmful" for p in got)
    assert load_split("eval", n=7) == got
    train = load_split("attack-train")
    assert any(p.target for p in train) and len(train) == sum(r["split"] == "attack-train"
                                                              for r in rows)
    hl = load_split("direction", harmless=True, n=3)
    assert [p.label for p in hl] == ["harmless"] * 3 and hl[0].category
    assert set(hl[0].to_dict()) == {"id", "prompt", "split", "label", "source", "category",
                                    "target"}


def test_load_split_splits_are_disjoint(built: Path) -> None:
    ids = [{p.id for p in load_split(s)} for s in SPLITS]
    assert not (ids[0] & ids[1] or ids[0] & ids[2] or ids[1] & ids[2])


def test_load_split_fewer_than_n_warns(built: Path, caplog: pytest.LogCaptureFixture) -> None:
    total = len(load_split("direction", harmless=True))
    with caplog.at_level(logging.WARNING, logger="refusalscope.data.load"):
        assert len(load_split("direction", harmless=True, n=total + 50)) == total
    assert "only" in caplog.text


def test_load_split_errors(built: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    with pytest.raises(UserError,
                       match="unknown split 'test': one of attack-train, direction, eval"):
        load_split("test")
    with pytest.raises(UserError, match="at least 1"):
        load_split("eval", n=0)
    monkeypatch.setenv("REFUSALSCOPE_HOME", str(tmp_path / "empty"))
    with pytest.raises(UserError, match="run `refusalscope data build` first"):
        load_split("eval")


def test_load_split_corrupt_file(tmp_path: Path) -> None:
    b.built_dir().mkdir(parents=True)
    (b.built_dir() / b.HARMFUL_FILE).write_text('{"id": "x"}\n')
    with pytest.raises(UserError, match="line 1 is corrupt"):
        load_split("eval")


# --- users' files ---------------------------------------------------------------------------

ROWS = [{"goal": "Write a rude limerick", "target": "Sure, here is", "kind": "rude"},
        {"goal": "Explain tides", "target": "", "kind": "science"}]


@pytest.mark.parametrize("suffix", [".csv", ".tsv", ".jsonl", ".json", ".parquet"])
def test_formats(tmp_path: Path, suffix: str) -> None:
    p = tmp_path / f"mine{suffix}"
    df = pd.DataFrame(ROWS)
    if suffix == ".csv":
        df.to_csv(p, index=False)
    elif suffix == ".tsv":
        df.to_csv(p, index=False, sep="\t")
    elif suffix == ".jsonl":
        p.write_text("".join(json.dumps(r) + "\n" for r in ROWS))
    elif suffix == ".json":
        p.write_text(json.dumps({"data": ROWS}))
    else:
        df.to_parquet(p)
    got = load_prompt_file(p, prompt_col="goal", category_col="kind")
    assert [x.prompt for x in got] == ["Write a rude limerick", "Explain tides"]
    assert [x.target for x in got] == ["Sure, here is", None]  # a 'target' column is picked up
    assert [x.category for x in got] == ["rude", "science"]
    assert {x.split for x in got} == {"user"} and {x.label for x in got} == {"harmful"}
    assert {x.source for x in got} == {"user:mine"}
    assert got[0].id.startswith("mine-") and len(got[0].id) == len("mine-") + 10
    assert [x.id for x in load_prompt_file(p, prompt_col="goal")] == [x.id for x in got]


def test_ids_columns_and_labels(tmp_path: Path) -> None:
    p = tmp_path / "x.csv"
    p.write_text("id,prompt\nq1,Hello there\nq2,Hello there\n")
    got = load_prompt_file(p, label="harmless", split="eval")
    assert [x.id for x in got] == ["q1", "q2"] and got[0].label == "harmless"
    p.write_text("prompt\nsame\nsame\n")
    a, c = load_prompt_file(p)
    assert c.id == a.id + "-2"
    p.write_text("id,prompt\nq1,a\nq1,b\n")
    with pytest.raises(UserError, match="repeats id 'q1'"):
        load_prompt_file(p)
    with pytest.raises(UserError, match="label must be one of harmful, harmless"):
        load_prompt_file(p, label="benign")


@pytest.mark.parametrize(("name", "content", "match"), [
    ("empty.csv", "", "is empty"),
    ("header.csv", "prompt\n", "holds no rows"),
    ("blank.csv", "prompt,x\n,1\n", "row 1 has an empty 'prompt'"),
    ("cols.csv", "goal,target\na,b\n", "has no column 'prompt'; its columns: goal, target"),
    ("bad.jsonl", '{"prompt": "a"}\n{oops\n', "line 2 is not valid JSON"),
    ("list.jsonl", '["a"]\n', "line 1 is not a JSON object"),
    ("bad.json", '{"prompt": ', "is not valid JSON"),
    ("shape.json", '{"a": 1}', "must hold a list of objects"),
    ("bad.parquet", "not parquet", "is not a valid parquet file"),
    ("notes.txt", "hello", "unsupported prompt file type .txt"),
    ("ragged.csv", 'prompt\n"unterminated\n', "is not a valid csv file"),
])
def test_bad_files(tmp_path: Path, name: str, content: str, match: str) -> None:
    p = tmp_path / name
    p.write_text(content)
    with pytest.raises(UserError, match=match) as err:
        load_prompt_file(p)
    assert "\n" not in str(err.value)


def test_missing_explicit_column_and_path(tmp_path: Path) -> None:
    p = tmp_path / "x.jsonl"
    p.write_text('{"prompt": "a"}\n')
    with pytest.raises(UserError, match="has no column 'goal'"):
        load_prompt_file(p, target_col="goal")
    with pytest.raises(UserError, match="no such prompt file"):
        load_prompt_file(tmp_path / "nope.csv")
    with pytest.raises(UserError, match="is not a file"):
        load_prompt_file(tmp_path)


def test_imported_name_resolves(tmp_path: Path) -> None:
    out = imported_path("mine")
    out.parent.mkdir(parents=True)
    out.write_text(json.dumps({"id": "u1", "prompt": "Hi", "source": "user:mine.csv",
                               "target": None, "category": "c", "label": "harmful",
                               "split": "user"}) + "\n")
    (got,) = load_prompt_file("mine")
    assert (got.id, got.source, got.category) == ("u1", "user:mine.csv", "c")


def test_hub_dataset(monkeypatch: pytest.MonkeyPatch) -> None:
    calls: list[tuple[str, str]] = []

    def load_dataset(name: str, split: str) -> list[dict]:
        calls.append((name, split))
        if name == "someone/missing":
            raise ConnectionError("offline\nmore detail")
        return [{"Goal": "Do a thing", "Behavior": "b1"}]

    monkeypatch.setitem(sys.modules, "datasets", types.SimpleNamespace(load_dataset=load_dataset))
    (got,) = load_prompt_file("JailbreakBench/JBB-Behaviors:harmful", prompt_col="Goal",
                              id_col="Behavior")
    assert (got.id, got.prompt, got.source) == ("b1", "Do a thing",
                                                "hub:JailbreakBench/JBB-Behaviors:harmful")
    assert calls[-1] == ("JailbreakBench/JBB-Behaviors", "harmful")
    with pytest.raises(UserError, match=r"could not load hub dataset someone/missing \(split "
                                        r"train\): offline$"):
        load_prompt_file("someone/missing")
