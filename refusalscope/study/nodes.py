"""What each node kind runs: a table from kind to a function calling the library in-process.

A runner gets the node, the recorded outputs of its inputs (role -> outputs dict) and its own
work folder, which is `$REFUSALSCOPE_ARTIFACTS` while it runs, so its run folders land in
`<work>/runs/`. It returns its outputs (paths of the runs it made), which the executor records
atomically in `node.json` only after the runner returned: a node without `node.json` is not
done, whatever its folder holds.

Each runner picks up an interrupted attempt of itself: a finished run is adopted, an unfinished
generate / attack run continues from its checkpoint (`--resume`), and a scoring the previous
attempt left unrecorded is removed before scoring again, so no result is written twice.
To add a kind: write `run_<kind>(node, ins, work) -> dict` and add it to `NODE_KINDS`; a
registered attack (prompt or weights) needs nothing here (`attack-<name>` runs through
`attacks.runner`).
"""

from __future__ import annotations

import fcntl
import json
import shutil
from collections.abc import Callable
from contextlib import contextmanager
from pathlib import Path
from typing import Any

from refusalscope.errors import UserError
from refusalscope.fileio import atomic_write_json, write_jsonl

Runner = Callable[[Any, dict[str, dict[str, Any]], Path], dict[str, Any]]
ATTEMPT = "attempt.json"
NODE_FILE = "node.json"
_SCORE_FILES = ("scores*.jsonl", "metrics*.json", "drift*.json")


def _options(p: dict[str, Any]) -> Any:
    from refusalscope.models.handle import RuntimeOptions

    return RuntimeOptions(device=p.get("device", "auto"))


def _runs(work: Path, command: str) -> list[Any]:
    """This node's earlier run folders of `command` (from interrupted attempts), oldest first."""
    from refusalscope.runs import Run

    out = []
    for path in sorted((work / "runs").glob(f"*_{command}_*")):
        try:
            out.append(Run.open(path))
        except UserError:
            shutil.rmtree(path)  # a folder made but killed before its manifest was written
    return out


def _model(p: dict[str, Any], ins: dict[str, dict[str, Any]]) -> str:
    """The model a node reads: the defended model of a weights defense's node (its `model`
    output, input role `defended`), else `p["model"]`."""
    return str(ins["defended"]["model"]) if "defended" in ins else str(p["model"])


def _adapter(p: dict[str, Any], ins: dict[str, dict[str, Any]]) -> str | None:
    if "adapter" not in ins:
        return None
    return ins["adapter"]["runs"][str(p["adapter_steps"])]


def _attacked_prompts(p: dict[str, Any], attack: dict[str, Any], work: Path) -> str:
    """The eval prompts with the attack's artefact applied (`Attack.apply`: a GCG suffix, an
    AutoDAN text, each template), as a prompt file."""
    from refusalscope.attacks.registry import get
    from refusalscope.attacks.runner import load_result
    from refusalscope.generation import GenerateConfig, load_prompts
    from refusalscope.runs import config_id

    base = load_prompts(GenerateConfig(model=p["model"], split=p["split"], n=p["n"],
                                       prompts_file=p["prompts"]))
    result = load_result(attack["run"])
    applied = get(result.attack).apply(None, result, base)
    # Beside the attack's own files, so `fit` finds the attack run from the prompts file; the
    # content is a function of the name, so a repeat writes the same bytes.
    key = config_id({"split": p["split"], "prompts": p["prompts"], "n": p["n"]})
    path = Path(attack["run"]) / f"attacked_eval_{key}.jsonl"
    if not path.is_file():
        rows = []
        for it in applied:
            q = base[it["request"]]
            rows.append({**q.to_dict(), "id": it.get("id", q.id), "prompt": it["prompt"],
                         "goal": q.prompt})
        tmp = work / (path.name + ".tmp")
        write_jsonl(tmp, rows)
        tmp.replace(path)
    return str(path)


def run_generate_node(node: Any, ins: dict[str, dict[str, Any]], work: Path) -> dict[str, Any]:
    from refusalscope.generation import GenerateConfig, run_generate

    p = node.params
    weights = _weights_run(p, ins)  # a weights attack's run: its `apply` gives the model
    prompted = "attack" in ins and weights is None  # a prompt attack: the attacked prompts
    prompts = _attacked_prompts(p, ins["attack"], work) if prompted else p["prompts"]
    n = len(Path(prompts).read_text(encoding="utf-8").splitlines()) if prompted else p["n"]
    cfg = GenerateConfig(model=_model(p, ins), split=p["split"], n=n,
                         prompts_file=prompts, adapter=_adapter(p, ins),
                         max_new_tokens=p["max_new_tokens"],
                         baseline=ins["baseline"]["run"] if "baseline" in ins else None,
                         attack_run=weights, **_runtime_defenses(ins))
    earlier = _runs(work, "generate")
    if earlier and earlier[-1].manifest.status == "success":
        return {"run": str(earlier[-1].path)}
    resume = str(earlier[-1].path) if earlier else None
    if resume:
        cfg = GenerateConfig.from_dict(earlier[-1].manifest.config)
    run = run_generate(cfg, options=_options(p), batch_size=p.get("batch_size", 16),
                       resume=resume, attacked=_applier(cfg.attack_run))
    return {"run": str(run.path)}


def _weights_run(p: dict[str, Any], ins: dict[str, dict[str, Any]]) -> str | None:
    """The run of the weights attack (any but LoRA, whose cells are `adapter` inputs) a
    generate node reads as its `attack` input; None for none or a prompt attack."""
    from refusalscope.attacks.base import WEIGHTS
    from refusalscope.attacks.registry import get

    if "attack" not in ins or get(p["attack"]).kind != WEIGHTS:
        return None
    return str(ins["attack"]["run"])


def _applier(attack_run: str | None) -> Any:
    from refusalscope.attacks.runner import weights_applier

    return weights_applier(attack_run) if attack_run is not None else None


def _runtime_defenses(ins: dict[str, dict[str, Any]]) -> dict[str, Any]:
    """`GenerateConfig` fields of the runtime defenses a generate node reads (input role: the
    defense's name; `Defense.generation` of its node's outputs), and `defense` naming them, so
    the run records which defense it was made with (`study.points` labels it)."""
    from refusalscope.defenses.base import RUNTIME
    from refusalscope.defenses.registry import REGISTRY

    out: dict[str, Any] = {}
    names = []
    for role, outputs in ins.items():
        d = REGISTRY.get(role)
        if d is not None and d.kind == RUNTIME:
            out.update(d.generation(outputs))
            names.append(d.name)
    return {**out, "defense": "+".join(names)} if names else out


@contextmanager
def _locked(path: Path):  # type: ignore[no-untyped-def]
    """Scorings of one generate run take turns (they pick file names in the same folder)."""
    with open(path, "a") as fh:
        fcntl.flock(fh, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(fh, fcntl.LOCK_UN)


def _claimed(study_nodes: Path, gen_run: str) -> set[str]:
    """Score files of `gen_run` that finished score nodes have recorded as theirs."""
    from refusalscope.study.portable import absolute_outputs

    out: set[str] = set()
    for f in study_nodes.glob(f"score-*/{NODE_FILE}"):
        rec = absolute_outputs(json.loads(f.read_text(encoding="utf-8")), study_nodes.parent)
        o = rec.get("outputs", {})
        if o.get("run") and Path(o["run"]).resolve() == Path(gen_run).resolve():
            out.update(Path(o[k]).name for k in ("scores", "metrics", "drift") if o.get(k))
    return out


def _roll_back(work: Path, run_path: Path) -> None:
    """Remove the score files an interrupted attempt of this node wrote but never recorded."""
    from refusalscope.runs import Run

    att = work / ATTEMPT
    if not att.is_file():
        return
    before = set(json.loads(att.read_text(encoding="utf-8"))["files_before"])
    keep = before | _claimed(work.parent, str(run_path))
    gone = {f.name for pat in _SCORE_FILES for f in run_path.glob(pat) if f.name not in keep}
    for name in gone:
        (run_path / name).unlink()
    if gone:
        run = Run.open(run_path)
        events = run.manifest.extra.get("scores", [])
        run.manifest.extra["scores"] = [e for e in events if e.get("scores_file") not in gone]
        run.save()


def run_score_node(node: Any, ins: dict[str, dict[str, Any]], work: Path) -> dict[str, Any]:
    from refusalscope.scoring import BootstrapSpec
    from refusalscope.scoring.factory import scorer as make_scorer
    from refusalscope.scoring.score import load_run, score_loaded

    run_path = Path(ins["generate"]["run"])
    scorer = make_scorer(node.params["scorer"], classifier=node.params.get("classifier"))
    loaded = load_run(run_path)
    with _locked(run_path / ".study-score.lock"):
        _roll_back(work, run_path)
        files = sorted(f.name for pat in _SCORE_FILES for f in run_path.glob(pat))
        atomic_write_json(work / ATTEMPT, {"files_before": files})
        res = score_loaded(loaded, scorer, bootstrap=BootstrapSpec(seed=node.params.get("seed", 0)))
    out = {"run": str(run_path), "scores": str(res.scores_path), "metrics": str(res.metrics_path)}
    if res.drift:
        out["drift"] = str(run_path / res.drift["drift_file"])
    return out


def run_lora_node(node: Any, ins: dict[str, dict[str, Any]], work: Path) -> dict[str, Any]:
    """One trajectory; each `steps` value is a cell run saved on the way (grid resumes by name)."""
    from refusalscope.attacks.grid import expand_grid, run_grid

    p = node.params
    grid = {"n_data": [p["n_data"]], "steps": p["steps"], "lr": [p["lr"]], "rank": [p["rank"]],
            "alpha": [p["alpha"]], "seed": [p["seed"]]}
    data = ins["pairs"]["pairs"] if "pairs" in ins else p["data"]
    modules = {"target_modules": tuple(p["target_modules"])} if p.get("target_modules") else {}
    cfgs = expand_grid(_model(p, ins), grid, batch_size=p["batch_size"], max_len=p["max_len"],
                       target_kind=p["target_kind"], data_file=data, dropout=p["dropout"],
                       **modules)
    results = run_grid(cfgs, options=_options(p))
    return {"runs": {str(r.config.steps): r.run_path for r in results}}


def run_pairs_node(node: Any, ins: dict[str, dict[str, Any]], work: Path) -> dict[str, Any]:
    """`data pairs` into the shared data cache (content-addressed: a rerun or another study
    with the same generator and settings reuses it); fails unless `n` pairs are kept."""
    from refusalscope.data.pairgen import PairsConfig, make_command, make_pairs
    from refusalscope.interp.steering import pin_spec

    p = node.params
    steer = {"none": None, "ablate": None}.get(p["steer"], p["steer"])
    if "directions" in ins:
        steer = "ablate:" + ins["directions"]["directions"]
    cfg = PairsConfig(generator=p["model"], steer=pin_spec(steer),
                      temperature=p["temperature"], top_p=p["top_p"],
                      max_new_tokens=p["max_new_tokens"], seed=p["seed"], scorer=p["scorer"])
    rep = make_pairs(cfg, p["n"], samples=p["samples"], options=_options(p))
    path = Path(rep.path) / "generations.jsonl"
    if rep.kept < p["n"]:
        raise UserError(f"[pairs]: {rep.kept} of {rep.generated} answers kept, fewer than "
                        f"n = {p['n']}; raise pairs.samples (or run "
                        f"`{make_command(path, p['n'])}`)")
    return {"pairs": str(path), "kept": rep.kept, "content_id": path.parent.name}


def run_attack_node(node: Any, ins: dict[str, dict[str, Any]], work: Path) -> dict[str, Any]:
    """Any registered attack but LoRA (node kind `attack-<name>`) through `attacks.runner`:
    its config from the node's params (the attack's `study_grid` / `study_fixed` keys). A
    prompt attack's artefact is applied to the eval prompts, a weights attack's to the model
    (`generate` reads the run's `result.json`: `Attack.apply`)."""
    from refusalscope.attacks.evaluate import REQUEST_DEFAULTS
    from refusalscope.attacks.registry import get
    from refusalscope.attacks.runner import RunConfig, config_fields, run_attack

    p = {**REQUEST_DEFAULTS, **node.params}
    name = node.kind.removeprefix("attack-")
    earlier = _runs(work, node.kind)
    if earlier and earlier[-1].manifest.status == "success":
        return {"run": str(earlier[-1].path)}
    resume = str(earlier[-1].path) if earlier else None
    cfg = None if resume else RunConfig(
        name, _model(p, ins), config_fields(get(name), p), mode=p["mode"], split=p["split"],
        n=p["n"], adapter=_adapter(p, ins), max_new_tokens=p["max_new_tokens"])
    return {"run": str(run_attack(cfg, resume=resume, options=_options(p)).path)}


def run_probe_node(node: Any, ins: dict[str, dict[str, Any]], work: Path) -> dict[str, Any]:
    from refusalscope.interp.activations import ProbeConfig, run_probe

    p = node.params
    earlier = _runs(work, "probe")
    if earlier and earlier[-1].manifest.status == "success":
        return {"run": str(earlier[-1].path)}
    for r in earlier:  # probe has no resume: an interrupted extraction is dropped and redone
        shutil.rmtree(r.path)
    cfg = ProbeConfig(model=p["model"], adapter=_adapter(p, ins), sites=tuple(p["sites"]),
                      layers=p["layers"], positions=p["positions"], n=p["n"], split=p["split"])
    return {"run": str(run_probe(cfg, options=_options(p)).path)}


# ---------------------------------------------------------------- defenses
# `defend-<name>` nodes and `probe-sweep` (the direction the steering defense adds back) adopt
# a finished run of an earlier attempt; an interrupted run of a resumable defense (TAR)
# continues from its checkpoint, the others start over.

def _earlier(work: Path, command: str, *, resumable: bool) -> tuple[Any, str | None]:
    """(a finished run to adopt or None, a run to resume or None); drops what cannot resume."""
    earlier = _runs(work, command)
    if earlier and earlier[-1].manifest.status == "success":
        return earlier[-1], None
    if resumable and earlier:
        return None, str(earlier[-1].path)
    for r in earlier:
        shutil.rmtree(r.path)
    return None, None


def run_defense_node(node: Any, ins: dict[str, dict[str, Any]], work: Path) -> dict[str, Any]:
    """Any registered defense (node kind `defend-<name>`) through `defenses.runner`: its config
    from the node's params (the defense's `study_keys`), the model (the defended one in a
    weights-defense variant), the attacked cell's adapter and the files of its inputs."""
    from refusalscope.defenses.base import config_from
    from refusalscope.defenses.registry import node_defense
    from refusalscope.defenses.runner import command, run_defense

    d = node_defense(node.kind)
    assert d is not None, node.kind
    p = node.params
    done, resume = _earlier(work, command(d), resumable=d.resumable)
    if done is None:
        files = {role: ins[role][role] for role in d.study_inputs}
        cfg = None if resume else config_from(d, {**p, "model": _model(p, ins),
                                                  "adapter": _adapter(p, ins), **files})
        done = run_defense(d, cfg, resume=resume, options=_options(p))
    return {"run": str(done.path), **d.outputs(done)}


def run_sweep_node(node: Any, ins: dict[str, dict[str, Any]], work: Path) -> dict[str, Any]:
    from refusalscope.interp.sweep import DIRECTIONS, run_sweep

    p = node.params
    done, _ = _earlier(work, "probe-sweep", resumable=False)
    if done is None:
        done = run_sweep(model=p["model"], n=p["n"], n_val=p["n_val"],
                         positions=p["positions"], device=p.get("device", "auto"))
    return {"run": str(done.path), "directions": str(done.path / DIRECTIONS)}


class _Kinds(dict[str, Runner]):
    """Node kinds; `attack-<name>` of any registered attack (prompt or weights) runs
    `run_attack_node` and `defend-<name>` of any registered defense `run_defense_node` (looked
    up when asked for, so an attack or defense registered later is found too)."""

    def __missing__(self, kind: str) -> Runner:
        from refusalscope.attacks.registry import REGISTRY
        from refusalscope.defenses.registry import node_defense

        if node_defense(kind) is not None:
            return run_defense_node
        if not kind.startswith("attack-") or kind.removeprefix("attack-") not in REGISTRY:
            raise KeyError(kind)
        return run_attack_node


NODE_KINDS: dict[str, Runner] = _Kinds({
    "generate": run_generate_node,
    "score": run_score_node,
    "attack-lora": run_lora_node,
    "probe": run_probe_node,
    "pairs": run_pairs_node,
    "probe-sweep": run_sweep_node,
})
