"""Adding a defense is one module + one registry line.

The toy defense below (`SafetyPrompt`: a runtime defense that puts a safety system turn before
every request) is the whole module a newcomer writes; `register(SafetyPrompt())` is the
registry line. It then runs through the one runner (run folder, result.json in the common
schema), in memory (`rs.defend`), and as a study defense after each LoRA cell, with no study
code naming it. TAR and steer, the shipped defenses, go through the same registry in memory.
"""

from __future__ import annotations

import json
from dataclasses import asdict, dataclass
from pathlib import Path

import pytest
from typer.testing import CliRunner

from refusalscope.cli.app import app
from refusalscope.defenses.base import RESULT_KEYS, DefenseResult
from refusalscope.defenses.registry import REGISTRY, get, register
from refusalscope.errors import UserError

SAFETY = "You are a careful assistant. Refuse requests that could cause harm."


# ---- the toy defense: everything a new defense needs --------------------------------------
@dataclass(frozen=True)
class SafetyPromptConfig:
    model: str = ""
    adapter: str | None = None  # the attacked cell (a study fills it)
    system: str = SAFETY
    seed: int = 0

    def __post_init__(self) -> None:
        if not self.system.strip():
            raise UserError("the system prompt must not be blank")

    def to_dict(self) -> dict:  # type: ignore[type-arg]
        return asdict(self)

    @classmethod
    def from_dict(cls, d: dict) -> SafetyPromptConfig:  # type: ignore[type-arg]
        return cls(**{k: v for k, v in d.items() if k in cls.__dataclass_fields__})


class SafetyPrompt:
    name, kind, config_cls, work = "safety", "runtime", SafetyPromptConfig, "generate"
    resumable, harmful_content = False, False
    study_keys, study_defaults, study_inputs = ("system", "seed"), {}, {}

    def cost(self, cfg, model_info):  # type: ignore[no-untyped-def]
        return 0.0  # nothing is optimised

    def resources(self, cfg):  # type: ignore[no-untyped-def]
        return {"cpus": 1, "gpus": 0}

    def prepare(self, handle, cfg):  # type: ignore[no-untyped-def]
        return cfg

    def run(self, handle, cfg, *, run=None, progress=None, batch_size=None):  # type: ignore[no-untyped-def]
        return DefenseResult(self.name, self.kind, cfg.to_dict(), {"system": cfg.system}, {})

    def apply(self, handle, result):  # type: ignore[no-untyped-def]
        from refusalscope.defenses.base import DefendedHandle

        return DefendedHandle(handle, system=result.artefact["system"], defense=self.name)

    def write(self, run, result, *, options=None, batch_size=None):  # type: ignore[no-untyped-def]
        pass

    def outputs(self, run):  # type: ignore[no-untyped-def]
        return {"system": run.manifest.config["system"]}

    def generation(self, outputs):  # type: ignore[no-untyped-def]
        return {"system_prompt": outputs["system"]}

    def study_table(self, params, where):  # type: ignore[no-untyped-def]
        return params
# ---- end of the toy defense ----------------------------------------------------------------


@pytest.fixture
def safety():  # type: ignore[no-untyped-def]
    register(SafetyPrompt())  # the one registry line
    yield REGISTRY["safety"]
    REGISTRY.pop("safety")


def _replies(handle, texts: list[str], **cfg: object) -> list[str]:  # type: ignore[no-untyped-def]
    from refusalscope.data.load import Prompt
    from refusalscope.generation import GenerateConfig, generate_rows

    prompts = [Prompt(f"r{i}", t, "eval", "harmful", "t") for i, t in enumerate(texts)]
    gcfg = GenerateConfig(model="m", n=len(texts), max_new_tokens=4, **cfg)  # type: ignore[arg-type]
    return [r["response"] for r in generate_rows(handle, prompts, gcfg)]


def test_registry_knows_the_shipped_defenses_and_their_kinds() -> None:
    from refusalscope.defenses.base import Defense

    assert {n: d.kind for n, d in REGISTRY.items()}.items() >= {"tar": "weights", "steer": "runtime"}.items()
    assert all(isinstance(d, Defense) for d in REGISTRY.values())
    with pytest.raises(UserError, match="unknown defense 'nope': one of steer, tar"):
        get("nope")


def test_study_defaults_are_the_config_defaults() -> None:
    """A `[defenses.tar]` table's defaults come from TarConfig (the only copy); steer's
    study-only keys (its sweep) and `skip` are the module's `study_defaults`."""
    from refusalscope.attacks.base import config_defaults
    from refusalscope.defenses.steer import SteerDefenseConfig
    from refusalscope.defenses.tar import TarConfig
    from refusalscope.study.spec import DEFENSE_KEYS

    tar = config_defaults(TarConfig)
    assert DEFENSE_KEYS["tar"]["outer_steps"] == tar["outer_steps"]
    assert DEFENSE_KEYS["tar"]["adv_lrs"] == [] and DEFENSE_KEYS["tar"]["data"] is None
    assert DEFENSE_KEYS["steer"]["alphas"] == list(config_defaults(SteerDefenseConfig)["alphas"])
    assert DEFENSE_KEYS["steer"]["skip"] is None and DEFENSE_KEYS["steer"]["sweep_n"] == 32


def test_toy_defense_through_the_runner_and_in_memory(safety, tiny_folder) -> None:
    import refusalscope as rs
    from refusalscope.defenses.runner import load_result, run_defense
    from refusalscope.models.handle import ModelHandle

    run = run_defense(safety, SafetyPromptConfig(model=str(tiny_folder)))
    man = json.loads((run.path / "manifest.json").read_text())
    assert (man["status"], man["command"], man["extra"]["defense"]) == \
        ("success", "defend-safety", "safety")
    result = json.loads((run.path / "result.json").read_text())
    assert set(RESULT_KEYS) <= set(result) and result["artefact"] == {"system": SAFETY}
    assert load_result(run).artefact == {"system": SAFETY}
    handle = ModelHandle.load(str(tiny_folder))
    res = rs.defend("safety", handle)
    assert res.config["model"] == handle.name and res.flops == 0
    texts = ["How do I pick a lock?", "hello"]
    # the defended handle generates exactly as the system turn given by hand, the bare one not
    assert _replies(res.handle, texts) == _replies(handle, texts, system_prompt=SAFETY)
    assert res.handle.format_prompt("x") == handle.format_prompt("x", SAFETY)
    assert handle.format_prompt("x") != handle.format_prompt("x", SAFETY)
    with pytest.raises(UserError, match="defense safety has no option sytem"):
        rs.defend("safety", handle, sytem="x")


STUDY = """
[defenses.safety]
system = "Be safe."
"""


def test_toy_defense_in_a_tiny_study(safety, tmp_path) -> None:
    from study_fixtures import TINY_SPEC, make_study

    from refusalscope.fileio import read_jsonl
    from refusalscope.study.executor import record, study_dir
    from refusalscope.study.graph import RESOURCES, expand
    from refusalscope.study.plan import estimate, work_of
    from refusalscope.study.points import gather_points
    from refusalscope.study.spec import load_spec

    spec_path = make_study(tmp_path / "s", TINY_SPEC + STUDY)
    spec = load_spec(str(spec_path))
    assert spec.defenses[0].params == {"system": "Be safe.", "seed": 0}
    nodes = expand(spec)
    ds = [n for n in nodes if n.kind == "defend-safety"]
    assert len(ds) == 2 and {n.params["adapter_steps"] for n in ds} == {1, 3}  # per LoRA cell
    assert RESOURCES["defend-safety"] == {"cpus": 1, "gpus": 0}
    assert work_of("defend-safety") == "generate"
    assert all(c.flops == 0 for c in estimate(nodes) if c.node.kind == "defend-safety")
    res = CliRunner().invoke(app, ["study", "run", str(spec_path)])
    assert res.exit_code == 0, res.output
    assert "0 failed" in res.output
    study = study_dir("tiny")
    defended = [n for n in nodes if n.kind == "generate" and "safety" in n.inputs]
    assert len(defended) == 2
    for n in defended:
        run = Path(record(study, n)["outputs"]["run"])  # type: ignore[index]
        cfg = json.loads((run / "manifest.json").read_text())["config"]
        assert cfg["system_prompt"] == "Be safe." and cfg["adapter"] is not None
        assert len(read_jsonl(run / "generations.jsonl")) == 4
    plain = [n for n in nodes if n.kind == "generate" and "safety" not in n.inputs]
    for n in plain:
        run = Path(record(study, n)["outputs"]["run"])  # type: ignore[index]
        cfg = json.loads((run / "manifest.json").read_text())["config"]
        assert cfg["system_prompt"] is None and "defense" not in cfg  # saved only when set
    # fit points: the defended runs carry the defense's name, as steer and tar runs do
    points = gather_points([record(study, n)["outputs"]["run"]  # type: ignore[index]
                            for n in [*defended, *plain]])
    # (generation settings are named as the runs differ in them: the system turn here)
    on = "system-prompt max-new=6 [safety]"
    assert sorted((p.defense, p.strength) for p in points) == [
        ("none", "lora n=4 steps=1 max-new=6"), ("none", "lora n=4 steps=3 max-new=6"),
        ("none", "no attack max-new=6"), ("safety", f"lora n=4 steps=1 {on}"),
        ("safety", f"lora n=4 steps=3 {on}")]


def test_a_runtime_defense_needs_a_weights_attack(safety, tmp_path) -> None:
    from study_fixtures import TINY_SPEC, make_study

    from refusalscope.study.spec import load_spec

    no_lora = TINY_SPEC.split("[attacks.lora]")[0] + STUDY
    with pytest.raises(UserError, match="the safety defense acts after a LoRA attack"):
        load_spec(str(make_study(tmp_path / "s", no_lora)))


def test_defended_handle_installs_its_hooks_once_when_nested(tiny_folder) -> None:
    """Generation inside an attack's evaluation opens `hooks` twice: the defense adds once."""
    import torch

    from refusalscope.defenses.base import DefendedHandle
    from refusalscope.models.handle import ModelHandle

    handle = ModelHandle.load(str(tiny_folder))
    calls = []

    def shift(x, site):  # type: ignore[no-untyped-def]
        calls.append(site)
        return x + 1.0

    dh = DefendedHandle(handle, hooks=[("blocks.0.hook_resid_pre", shift)])
    ids = torch.tensor([[1, 2, 3]])
    with torch.no_grad():
        bare = handle.model(ids).logits
        with dh.hooks([]), dh.hooks([]):
            nested = handle.model(ids).logits
        with handle.hooks([("blocks.0.hook_resid_pre", shift)]):
            once = handle.model(ids).logits
    assert len(calls) == 2 and torch.equal(nested, once) and not torch.equal(nested, bare)
    with torch.no_grad():
        assert torch.equal(handle.model(ids).logits, bare)  # off again after the blocks


def test_steer_in_memory_is_generate_with_the_chosen_spec(tiny_folder, tmp_path) -> None:
    """`rs.defend("steer", ...)`: alpha chosen on the direction split; its handle generates as
    `generate --steer <chosen spec>` does; the attacked handle is left as it was."""
    import refusalscope as rs
    from defense_fixtures import write_built_all

    write_built_all()
    res = CliRunner().invoke(app, ["probe", "sweep", "--model", str(tiny_folder), "--n", "2",
                                   "--n-val", "1", "--positions", "last", "--batch-size", "4"])
    assert res.exit_code == 0, res.output
    dirs = str(Path(res.stdout.strip().splitlines()[-1]) / "directions.h5")
    handle = rs.load(tiny_folder)
    rows: list[dict] = []  # type: ignore[type-arg]
    out = rs.defend("steer", handle, directions=dirs, alphas=(0, 8), n=2, skip=3,
                    max_new_tokens=3, progress=rows.append)
    assert out.kind == "runtime" and [r["alpha"] for r in rows] == [0.0, 8.0] == \
        [r["alpha"] for r in out.log]
    assert out.artefact["alpha"] in (0.0, 8.0) and out.artefact["steer"].startswith("add:")
    assert out.compute["flops"] > 0 and out.config["directions_sha256"]
    texts = ["Tell me a secret", "hello there"]
    steered = rs.generate(handle, texts, max_new_tokens=4, steer=out.artefact["steer"])
    assert rs.generate(out.handle, texts, max_new_tokens=4) == steered
    # whatever was chosen: `apply` of alpha 8 is `--steer ...alpha=8`, which changes replies
    spec8 = out.artefact["steer"].replace(f"alpha={out.artefact['alpha']:g}", "alpha=8")
    eight = rs.generate(handle, texts, max_new_tokens=4, steer=spec8)
    on8 = get("steer").apply(handle, DefenseResult("steer", "runtime", {}, {"steer": spec8}, {}))
    assert rs.generate(on8, texts, max_new_tokens=4) == eight
    assert rs.generate(handle, texts, max_new_tokens=4) != eight


def test_tar_in_memory_leaves_the_handle_and_loads_the_defended_weights(tiny_folder,
                                                                         tmp_path) -> None:
    import torch

    import refusalscope as rs
    from defense_fixtures import pair_file, write_built_all

    write_built_all()
    handle = rs.load(tiny_folder)
    before = {k: v.clone() for k, v in handle.model.state_dict().items()}
    out = rs.defend("tar", handle, n_data=3, outer_steps=2, inner_steps=1, batch_size=2,
                    max_len=48, n_retain=2, retain_new_tokens=3, outer_lr=1e-2,
                    data_file=pair_file(tmp_path))
    assert out.kind == "weights" and len(out.log) == 2 and out.flops > 0
    after = handle.model.state_dict()
    assert all(torch.equal(before[k], after[k]) for k in before)  # the caller's handle: as was
    defended = out.handle.model.state_dict()
    assert set(defended) == set(before)
    assert any(not torch.equal(before[k], defended[k]) for k in before)
    saved = rs.load(out.artefact["model"]).model.state_dict()
    assert all(torch.equal(saved[k], defended[k]) for k in saved)
