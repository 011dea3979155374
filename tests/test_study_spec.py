"""Study specs: validation (one-line errors naming the key and where), expansion, content ids."""

from __future__ import annotations

import subprocess
import sys
from dataclasses import replace
from pathlib import Path

import pytest

from refusalscope.errors import UserError
from refusalscope.study.graph import expand, make_node, topological
from refusalscope.study.spec import load_spec, parse_spec, shipped_specs
from study_fixtures import TINY_SPEC, make_study


@pytest.fixture
def tiny(tmp_path: Path) -> Path:
    return make_study(tmp_path / "s")


def _write(folder: Path, text: str) -> Path:
    p = folder / "bad.toml"
    p.write_text(text)
    return p


def test_shipped_specs_load_and_expand() -> None:
    assert {"quickstart", "seed-plan"} <= set(shipped_specs())
    qs = load_spec("quickstart")
    assert [m.name for m in qs.models][:2] == ["smollm2-135m", "qwen2.5-coder-0.5b"]
    kinds = [n.kind for n in expand(qs)]
    assert kinds.count("attack-lora") == 2  # one trajectory per attacked model
    sp = load_spec("seed-plan")
    assert {a.kind for a in sp.attacks} == {"lora", "gcg", "autodan"}
    assert len(sp.seeds) == 3
    lora = [n for n in expand(sp) if n.kind == "attack-lora"]
    # 3 models x 3 data sizes x 3 seeds trajectories, each saving 500/1000/2000-step cells
    assert len(lora) == 27 and all(n.params["steps"] == [500, 1000, 2000] for n in lora)
    ds = load_spec("defenses")
    assert {d.kind for d in ds.defenses} == {"tar", "steer"}
    kinds = [n.kind for n in expand(ds)]
    # TAR's own adversary and two held-out LoRA attacks, on the undefended and the TAR model
    assert kinds.count("defend-tar") == 1 and kinds.count("attack-lora") == 6
    lg = expand(load_spec("lora-grid"))
    lora = [n for n in lg if n.kind == "attack-lora"]
    # the 0.5B: one trajectory per data size; the 1.5B: only its own step axis
    assert sorted((n.params["n_data"], tuple(n.params["steps"])) for n in lora) == [
        (16, (1, 4, 16, 64)), (64, (1, 4, 16, 32)), (64, (1, 4, 16, 64))]


def test_expansion_is_deterministic_and_content_addressed(tiny: Path) -> None:
    a, b = expand(load_spec(str(tiny))), expand(load_spec(str(tiny)))
    assert [n.id for n in a] == [n.id for n in b]
    kinds = [n.kind for n in a]
    # baseline generate + score, one LoRA trajectory, 2 cells x (generate + score)
    assert sorted(kinds) == sorted(["generate", "score", "attack-lora", "generate", "score",
                                    "generate", "score"])
    pos = {n.id: i for i, n in enumerate(a)}
    assert all(pos[d] < pos[n.id] for n in a for d in n.inputs.values())
    # a change upstream changes every id downstream, and nothing else
    changed = expand(load_spec(str(make_study(tiny.parent, TINY_SPEC.replace("max_len = 32",
                                                                              "max_len = 48")))))
    same = {n.id for n in a} & {n.id for n in changed}
    assert {n.kind for n in a if n.id in same} == {"generate", "score"}
    assert len(same) == 2  # the baseline and its score


def test_a_newer_default_scorer_re_scores_and_keeps_the_generations(
        tiny: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """Score nodes carry the rule versions and the default classifier's name: after an
    upgrade, `study run` re-scores (new score ids) and regenerates nothing (same generate
    ids), so a report never shows an older scorer's labels as today's."""
    from refusalscope.scoring import classifier, degeneracy

    text = TINY_SPEC.replace('scorers = ["heuristic"]', 'scorers = ["heuristic", "ensemble"]')
    spec = str(make_study(tiny.parent / "both", text))

    def ids(kind_scorer: str) -> set[str]:
        return {n.id for n in expand(load_spec(spec))
                if (n.kind if n.kind != "score" else n.params["scorer"]) == kind_scorer}

    scores = [n for n in expand(load_spec(spec)) if n.kind == "score"]
    assert {n.params["scorer"] for n in scores} == {"ensemble", "heuristic"}
    assert all(n.params["rules"].endswith(f"degeneracy {degeneracy.DEGENERACY_VERSION}")
               for n in scores)
    assert all(n.params.get("classifier") == (None if n.params["scorer"] == "heuristic"
                                              else classifier.DEFAULT_NAME) for n in scores)
    before = {k: ids(k) for k in ("generate", "attack-lora", "heuristic", "ensemble")}
    monkeypatch.setattr(classifier, "DEFAULT_NAME", "minilm-outcome-next")
    after = {k: ids(k) for k in before}
    assert {k: after[k] == before[k] for k in before} == {
        "generate": True, "attack-lora": True, "heuristic": True, "ensemble": False}
    assert not after["ensemble"] & before["ensemble"]
    monkeypatch.setattr(degeneracy, "DEGENERACY_VERSION", "next")
    after = {k: ids(k) for k in before}
    assert {k: after[k] == before[k] for k in before} == {
        "generate": True, "attack-lora": True, "heuristic": False, "ensemble": False}


def test_node_id_depends_on_params_and_inputs() -> None:
    x = make_node("score", {"scorer": "heuristic"}, {"generate": "generate-a"})
    assert x.id == make_node("score", {"scorer": "heuristic"}, {"generate": "generate-a"}).id
    assert x.id != make_node("score", {"scorer": "ensemble"}, {"generate": "generate-a"}).id
    assert x.id != make_node("score", {"scorer": "heuristic"}, {"generate": "generate-b"}).id
    assert x.id.startswith("score-")


def test_spec_round_trips(tiny: Path) -> None:
    s = load_spec(str(tiny))
    assert parse_spec(s.to_dict()) == s
    qs = load_spec("quickstart")
    assert parse_spec(qs.to_dict()) == qs


@pytest.mark.parametrize("text, fragment", [
    (TINY_SPEC.replace("n_data = [4]", "n_data = [4]\nstepz = [1]"),
     "unknown key 'stepz' in the spec (at attacks.lora.stepz)"),
    (TINY_SPEC.replace("[eval]", "[eval]\ntemperature = 0.5"),
     "unknown key 'temperature' in the spec (at eval.temperature)"),
    ("colour = 1\n" + TINY_SPEC, "unknown key 'colour' in the spec (at colour)"),
    (TINY_SPEC.replace('name = "tiny-llama"', 'name = "gpt-17"'),
     "model 'gpt-17' (at models[0]) is not in the registry"),
    (TINY_SPEC.replace("steps = [1, 3]", "steps = []"), "empty grid at attacks.lora.steps"),
    (TINY_SPEC + '[attacks.g1]\nkind = "gcg"\nafter = "g2"\n[attacks.g2]\nkind = "gcg"\n'
                 'after = "g1"\n', "cycle in attacks: g1 -> g2 -> g1"),
    (TINY_SPEC + '[attacks.g]\nkind = "gcg"\nafter = "nope"\n',
     "attacks.g.after names 'nope', which is not an attack in the spec (missing input)"),
    (TINY_SPEC.replace('kind', 'x') + '[attacks.w]\nkind = "warp"\n', "unknown attack kind 'warp'"),
])
def test_bad_specs_are_one_line_errors(tiny: Path, text: str, fragment: str) -> None:
    with pytest.raises(UserError) as e:
        load_spec(str(_write(tiny.parent, text)))
    assert fragment in str(e.value) and "\n" not in str(e.value)


def test_graph_cycle_and_missing_input() -> None:
    a = make_node("generate", {"model": "m"}, {})
    b = make_node("score", {"scorer": "heuristic"}, {"generate": a.id})
    assert [n.id for n in topological([b, a])] == [a.id, b.id]
    with pytest.raises(UserError, match="missing input"):
        topological([b])
    x = replace(a, inputs={"generate": b.id})
    with pytest.raises(UserError, match="cycle in the study graph"):
        topological([x, b])


def test_cli_bad_spec_exits_2_and_runs_nothing(tiny: Path) -> None:
    bad = _write(tiny.parent, TINY_SPEC.replace("n_data = [4]", "n_data = [4]\nstepz = [1]"))
    for cmd in ("run", "plan", "status"):
        p = subprocess.run([sys.executable, "-m", "refusalscope", "study", cmd, str(bad)],
                           capture_output=True, text=True, timeout=120)
        assert p.returncode == 2, p.stderr
        assert p.stderr.strip().count("\n") == 0 and "attacks.lora.stepz" in p.stderr
        assert "Traceback" not in p.stderr
    import os

    assert not (Path(os.environ["REFUSALSCOPE_ARTIFACTS"]) / "studies").exists()


def test_cli_plan_lists_nodes_and_cost(tiny: Path) -> None:
    from typer.testing import CliRunner

    from refusalscope.cli.app import app

    res = CliRunner().invoke(app, ["study", "plan", str(tiny)])
    assert res.exit_code == 0, res.output
    assert "7 of 7 nodes to run" in res.output and "attack-lora" in res.output
    assert "GFLOP/s" in res.output.replace("\n", " ")
