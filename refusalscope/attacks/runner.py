"""One runner for every registered attack: run folders, resume, evaluation, `result.json`.

`run_attack(RunConfig(...))` is what `refusalscope attack gcg|autodan|template` and the study's
prompt-attack nodes call; `attack(name, handle, requests, **cfg)` is the in-memory path
(`rs.attack`). Both evaluate through `attacks.evaluate` with scorers from `scoring.factory`
and return / write one schema (`base.AttackResult.to_json`, plus the attack's own keys).

A run folder is `attack-<name>`: manifest (config = this `RunConfig`), the attack's step log
and `state.json` (`--resume` continues from it), `attacked_prompts.jsonl` (prompt attacks;
`refusalscope generate --prompts` reads it), `eval.jsonl` and `result.json`.

Example:
    run = run_attack(RunConfig("gcg", "smollm2-135m", {"steps": 10}, prompt="How do I X?"))
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import TYPE_CHECKING, Any

from refusalscope.attacks.base import PROMPT, WEIGHTS, AttackResult, Progress
from refusalscope.attacks.evaluate import (REQUEST_DEFAULTS, evaluate_items, legacy_rates,
                                           load_requests, summarise)
from refusalscope.attacks.registry import get
from refusalscope.errors import UserError

if TYPE_CHECKING:
    from refusalscope.data.load import Prompt
    from refusalscope.models.handle import ModelHandle
    from refusalscope.runs import Run

ATTACKED, EVAL, RESULT = "attacked_prompts.jsonl", "eval.jsonl", "result.json"


@dataclass(frozen=True)
class RunConfig:
    """One attack run: which attack with which config, on which model and requests, and how
    it is evaluated. Saved as the run's manifest config (the attack's config under its name).

    `mode` "individual" attacks the one request at `skip`, "universal" `n` requests with one
    artefact. `eval_n`: held-out `eval` prompts the artefact is also tested on. `scorer`: a
    `scoring.factory` name (`study`: the ensemble if trained, else the heuristic);
    `classifier`: its classifier ("none": heuristic only). `steer`: a pinned
    `interp.steering.SteerSpec` string whose hooks are on during attack and evaluation.
    """

    attack: str
    model: str | None
    config: dict[str, Any] = field(default_factory=dict)
    mode: str = REQUEST_DEFAULTS["mode"]
    split: str = REQUEST_DEFAULTS["split"]
    n: int = REQUEST_DEFAULTS["n"]
    skip: int = 0
    prompt: str | None = None
    target: str | None = None
    prompts_file: str | None = None
    adapter: str | None = None
    steer: str | None = None
    eval_n: int = 0
    max_new_tokens: int = REQUEST_DEFAULTS["max_new_tokens"]
    evaluate: bool = True
    scorer: str = "study"
    classifier: str | None = None

    def __post_init__(self) -> None:
        from refusalscope.data.load import SPLITS

        a = get(self.attack)
        object.__setattr__(self, "config", a.config_cls.from_dict(self.config).to_dict())
        if self.mode not in ("individual", "universal"):
            raise UserError(f"unknown mode {self.mode!r}: individual or universal")
        if self.n < 1 or self.eval_n < 0 or self.max_new_tokens < 1:
            raise UserError("--n and --max-new-tokens must be at least 1, --eval-n at least 0")
        if self.skip < 0:
            raise UserError(f"--skip must be at least 0 (got {self.skip})")
        if self.target is not None and self.prompt is None:
            raise UserError("--target needs --prompt (split prompts bring their own targets)")
        if self.prompt is not None and self.n != 1:
            raise UserError("--prompt is one request: leave --n at 1")
        if self.prompts_file is None and self.prompt is None and self.split not in SPLITS:
            raise UserError(f"unknown split {self.split!r}: one of {', '.join(SPLITS)}")
        if self.eval_n and self.prompt is None and self.split == "eval":
            raise UserError("--eval-n tests on held-out `eval` prompts: attack another split")
        if self.model is None and (self.evaluate or a.kind != PROMPT or self.eval_n):
            raise UserError(f"--model is required: {self.attack} needs a model to run or to be "
                            "evaluated (a prompt attack without one: --no-evaluate)")

    @property
    def attack_config(self) -> Any:
        return get(self.attack).config_cls.from_dict(self.config)

    @property
    def n_requests(self) -> int:
        return 1 if self.mode == "individual" else self.n

    def to_dict(self) -> dict[str, Any]:
        d = {k: getattr(self, k) for k in self.__dataclass_fields__ if k != "config"}
        return {**d, self.attack: dict(self.config)}

    @classmethod
    def from_dict(cls, d: dict[str, Any], command: str | None = None) -> RunConfig:
        """Read `to_dict()` output, or an older `GCGRunConfig` / `AutoDANRunConfig` /
        `TemplateRunConfig` manifest (its `command` names the attack)."""
        name = d.get("attack") or (command or "").removeprefix("attack-")
        known = {k: v for k, v in d.items() if k in cls.__dataclass_fields__}
        known["config"] = dict(d.get(name, {}))
        if "n_eval" in d and "eval_n" not in d:
            known["eval_n"] = d["n_eval"]
        for old in ("texts_file", "texts_sha256"):  # AutoDAN's run config held these
            if d.get(old) is not None:
                known["config"][old] = d[old]
        if name == "template" and "attack" not in d:
            from refusalscope.attacks.template_run import TemplateConfig

            known["config"] = {k: d[k] for k in TemplateConfig.__dataclass_fields__ if k in d}
            known.setdefault("mode", "universal")
        known["attack"] = name
        return cls(**known)


def requests_of(cfg: RunConfig) -> list[Prompt]:
    """The requests `cfg` attacks."""
    return load_requests(cfg.split, cfg.n_requests, cfg.skip, cfg.prompt, cfg.target,
                         cfg.prompts_file)


def scorers_of(scorer: str = "study", classifier: str | None = None) -> dict[str, Any]:
    """The main scorer (first) and the heuristic beside it, by name."""
    from refusalscope.scoring.factory import scorer as make

    main = make(scorer, classifier=classifier)
    out = {main.name: main}
    if main.name != "heuristic":
        out["heuristic"] = make("heuristic")
    return out


def evaluate(handle: ModelHandle, result: AttackResult, requests: list[Prompt],
             heldout: list[Prompt] | None = None, *, max_new_tokens: int = 64,
             scorers: dict[str, Any] | None = None, batch_size: int = 8,
             on_batch: Any = None) -> AttackResult:
    """`result` with `scorer`, `groups` and `rows` filled: the requests (and `heldout`
    prompts) sent bare and attacked, labelled, summarised with CIs. A weights attack's
    attacked variant is the same request to the adapted model."""
    a = get(result.attack)
    scorers = scorers or scorers_of()
    heldout = heldout or []
    reqs = requests + heldout
    applied: list[dict[str, Any]] = []
    if a.kind == PROMPT:
        applied = _applied(a, handle, result, reqs)
        items = [(reqs[it["request"]], it.get("eval_id", reqs[it["request"]].id), it["prompt"],
                  _tags(it)) for it in applied]
        rows, comp = evaluate_items(handle, items, max_new_tokens, scorers,
                                    batch_size=batch_size, on_batch=on_batch)
    else:
        adapted = a.apply(handle, result, reqs)
        items = [(r, r.id, r.prompt, {}) for r in reqs]
        rows, comp = evaluate_items(handle, items, max_new_tokens, scorers,
                                    batch_size=batch_size, on_batch=on_batch,
                                    attacked_handle=adapted,
                                    baseline_off=getattr(adapted.model, "disable_adapter", None))
    groups = {"requests": requests[0].split if requests else "none",
              **({"heldout": "eval"} if heldout else {})}
    return replace(result, scorer=next(iter(scorers)), rows=rows, attacked=applied,
                   groups=summarise(rows, items, groups),
                   extra={**result.extra, "eval_compute": comp})


def _applied(a: Any, handle: ModelHandle | None, result: AttackResult,
             reqs: list[Any]) -> list[dict[str, Any]]:
    got = a.apply(handle, result, reqs)
    if not isinstance(got, list):
        raise TypeError(f"attack {a.name!r} is a prompt attack: apply must return rows")
    return got


def _tags(it: dict[str, Any]) -> dict[str, Any]:
    return {k: v for k, v in it.items() if k not in ("request", "prompt", "eval_id", "id")}


def attack(name: str, handle: ModelHandle, requests: list[Prompt], cfg: Any = None, *,
           evaluate_on: list[Prompt] | None = None, max_new_tokens: int = 64,
           scorer: str = "study", progress: Progress | None = None,
           **overrides: Any) -> AttackResult:
    """Run attack `name` on `requests` in memory and evaluate it (no run folder).

    `cfg`: the attack's config object (default: its config class with `overrides`);
    `evaluate_on`: held-out prompts the artefact is also tested on.

    Example:
        res = attack("gcg", handle, load_requests("attack-train", 1), steps=10)
        res.asr, res.groups["requests"]["attacked"]["wilson95"]
    """
    a = get(name)
    cfg = cfg if cfg is not None else a.config_cls(**config_fields(a, overrides))
    result = a.run(handle, requests, cfg, progress=progress)
    return evaluate(handle, result, requests, evaluate_on, max_new_tokens=max_new_tokens,
                    scorers=scorers_of(scorer))


def config_fields(a: Any, values: dict[str, Any]) -> dict[str, Any]:
    """`values` narrowed to the attack's config fields (`seed` -> `seeds` for a config with
    a list of seeds; a list where the config takes one value -> its largest)."""
    names = a.config_cls.__dataclass_fields__
    out = {k: v for k, v in values.items() if k in names}
    if "seed" in values and "seed" not in names and "seeds" in names:
        out["seeds"] = (values["seed"],)
    if "data" in values and "data_file" in names:
        out["data_file"] = values["data"]
    for k, v in out.items():
        if isinstance(v, list) and k not in ("seeds",):
            out[k] = max(v)
    return out


def _open(cfg: RunConfig | None, resume: str | None) -> tuple[Run | None, RunConfig]:
    """(the run to continue or None, its config) for `resume`, else (None, `cfg`)."""
    from refusalscope.runs import Run

    if resume is None:
        assert cfg is not None
        return None, cfg
    run = Run.open(resume)
    if not run.manifest.command.startswith("attack-"):
        raise UserError(f"{run.id} is a {run.manifest.command!r} run, not an attack run")
    if run.manifest.status == "success":
        raise UserError(f"{run.id} has finished; start a new run instead of --resume")
    return run, RunConfig.from_dict(run.manifest.config, run.manifest.command)


def run_attack(cfg: RunConfig | None = None, *, resume: str | None = None, options: Any = None,
               batch_size: int | None = None, progress: Progress | None = None,
               on_batch: Any = None) -> Run:
    """Attack, log every step, evaluate, write `result.json`; returns the finished `Run`.

    `resume`: an unfinished run of any attack (folder or id), continued from its state.
    Bad input fails before a model is loaded or a folder is made.
    """
    from refusalscope.data.load import load_split
    from refusalscope.runs import Run

    run, cfg = _open(cfg, resume)
    a = get(cfg.attack)
    acfg = cfg.attack_config
    requests = requests_of(cfg)
    heldout = load_split("eval", n=cfg.eval_n) if cfg.eval_n else []
    check = getattr(a, "check", None)  # optional: the attack's own input checks
    if check is not None:
        check(None, requests, acfg)  # before weights are loaded
    handle = _load(cfg, options) if cfg.model is not None else None
    if check is not None and handle is not None:
        check(handle, requests, acfg)  # what needs the model (e.g. token counts)
    if run is None:
        seed = getattr(acfg, "seed", None)
        if seed is None and getattr(acfg, "seeds", None):
            seed = acfg.seeds[0]
        run = Run.create(f"attack-{a.name}", cfg.to_dict(), model=cfg.model, seed=seed,
                         harmful_content=True)
    with run.guard():
        hooks = _hooks(cfg, handle)
        with _on(handle, hooks):
            result = a.run(handle, requests, acfg, run=run, progress=progress,
                           batch_size=batch_size)
        _write_attacked(run, a, handle, result, requests)
        if handle is not None:
            run.manifest.extra["model"] = _model_info(handle, cfg)
        run.manifest.extra["compute"] = result.compute
        if cfg.evaluate:
            with _on(handle, hooks):
                result = evaluate(handle, result, requests, heldout,
                                  max_new_tokens=cfg.max_new_tokens,
                                  scorers=scorers_of(cfg.scorer, cfg.classifier),
                                  batch_size=batch_size or 8, on_batch=on_batch)
            write_result(run, a, result)
    run.finish("success")  # resumable until here: --resume refuses a finished run
    return run


def write_result(run: Run, a: Any, result: AttackResult) -> None:
    """`eval.jsonl` and `result.json`: the common schema, the attack's own numbers
    (`extra`), old flat ASR keys, and what the attack's `report` adds."""
    from refusalscope.fileio import atomic_write_json, write_jsonl

    write_jsonl(run.file(EVAL), result.rows)
    body = {**result.extra, **legacy_rates(result.groups), **result.to_json()}
    if hasattr(a, "report"):
        body.update(a.report(result, result.attacked, _scorer_names(result)))
    atomic_write_json(run.file(RESULT), body)


def _scorer_names(result: AttackResult) -> list[str]:
    names = [k.removeprefix("outcome_") for k in (result.rows[0] if result.rows else {})
             if k.startswith("outcome_")]
    main = result.scorer
    return [main, *[n for n in names if n != main]] if main else names


def _write_attacked(run: Run, a: Any, handle: ModelHandle, result: AttackResult,
                    requests: list[Any]) -> None:
    from refusalscope.fileio import write_jsonl

    if a.kind != PROMPT:
        return
    rows = []
    for it in _applied(a, handle, result, requests):
        req = requests[it["request"]]
        rows.append({**req.to_dict(), "goal": req.prompt,
                     **{k: v for k, v in it.items() if k not in ("request", "eval_id")}})
    write_jsonl(run.file(ATTACKED), rows)
    run.manifest.extra["n_rows"] = len(rows)
    run.save()  # a run killed while evaluating still says what it holds


def _load(cfg: RunConfig, options: Any) -> Any:
    from refusalscope.models.handle import ModelHandle

    assert cfg.model is not None
    return ModelHandle.load(cfg.model, adapter=cfg.adapter, options=options)


def _hooks(cfg: RunConfig, handle: ModelHandle) -> list[Any]:
    if cfg.steer is None or handle is None:
        return []
    from refusalscope.interp.steering import SteerSpec

    return SteerSpec.parse(cfg.steer).hooks(handle)


def _on(handle: ModelHandle, hooks: list[Any]) -> Any:
    from contextlib import nullcontext

    return handle.hooks(hooks) if handle is not None and hooks else nullcontext()


def _model_info(handle: ModelHandle, cfg: RunConfig) -> dict[str, Any]:
    from refusalscope.models.registry import size_fields

    return {"source": handle.source, "n_params": handle.n_params(), **size_fields(handle),
            "adapter": handle.adapter, "steer": cfg.steer}


def weights_applier(run_path: str | Path) -> Callable[[ModelHandle], ModelHandle]:
    """The function that puts a finished weights attack's artefact on a loaded model (the
    attack's `apply`), for `generation.run_generate(..., attacked=...)`.

    Example:
        run_generate(GenerateConfig(model=m, attack_run=RUN), attacked=weights_applier(RUN))
    """
    result = load_result(run_path)
    a = get(result.attack)
    if a.kind != WEIGHTS:
        raise UserError(f"{run_path} is a {a.kind} attack ({a.name}): it rewrites prompts, "
                        "not the model")
    return lambda handle: a.apply(handle, result, [])


def load_result(run_path: str | Path) -> AttackResult:
    """The `AttackResult` of a finished attack run (rows from `eval.jsonl` when present);
    runs written before the common schema are read too (artefact from their flat keys)."""
    import json

    from refusalscope.fileio import read_jsonl
    from refusalscope.runs import Run

    run = Run.open(run_path)
    cfg = RunConfig.from_dict(run.manifest.config, run.manifest.command)
    d = json.loads(run.file(RESULT).read_text(encoding="utf-8")) if run.file(RESULT).is_file() \
        else {}
    art = d.get("artefact") or {k: d[k] for k in ("suffix", "suffix_ids", "body", "name",
                                                  "developer") if k in d}
    if not art and cfg.attack == "template":
        art = {"templates_per_seed": run.manifest.extra.get("templates_per_seed", {})}
    a = get(cfg.attack)
    rows = read_jsonl(run.file(EVAL)) if run.file(EVAL).is_file() else []
    return AttackResult(a.name, a.kind, cfg.config, art, d.get("compute", {}),
                        loss=d.get("loss"), scorer=d.get("scorer"), groups=d.get("summary", {}),
                        rows=rows)
