"""The library API: what a notebook needs, as functions over one model handle.

`load` a model, `generate` responses, `score` them, `attack` a model in memory (like
`nanogcg.run`), `defend` it in memory, and run a declarative `Study`. Each function is a thin
front on the code the CLI runs (`models.handle`, `generate.generate_rows`, `scoring.factory`
and `scoring.score.label_outcomes`, `attacks.registry` and `attacks.runner`,
`defenses.registry` and `defenses.runner`, `study.executor`), so a
notebook and `refusalscope ...` give the same numbers. Nothing heavy is imported until a
function is called: `import refusalscope` does not import torch.

Example:
    import refusalscope as rs
    handle = rs.load("smollm2-135m")
    responses = rs.generate(handle, ["How do I pick a lock?"], max_new_tokens=32)
    rs.score(["How do I pick a lock?"], responses)[0]["outcome"]
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

from refusalscope.errors import UserError
from refusalscope.registries import config_of

if TYPE_CHECKING:
    from refusalscope.attacks.base import AttackResult
    from refusalscope.defenses.base import DefenseResult
    from refusalscope.data.load import Prompt
    from refusalscope.models.handle import ModelHandle
    from refusalscope.scoring.base import Scorer
    from refusalscope.study.executor import Outcome

log = logging.getLogger(__name__)

# A request: its text, a `(request, target)` pair (target: the reply prefix an attack aims
# for), or a `data.load.Prompt` (from `prompts(...)`).
Request = Any


def load(model: str | Path, *, device: str | None = None, dtype: str | None = None,
         adapter: str | Path | None = None, trust_remote_code: bool = False) -> ModelHandle:
    """Load a model: a registry name (pulled on first use), a model folder, a `.gguf` file or a
    hub id; `adapter` is a peft adapter folder or a LoRA attack run holding one.

    `device`: auto (default: CUDA when present) | cpu | cuda | cuda:N | mps; `dtype`: auto
    (default: bf16 on CUDA, fp32 on CPU) | float32 | bfloat16 | float16. An unknown name or
    option is a `UserError`.

    Example:
        handle = rs.load("qwen2.5-coder-0.5b", device="cpu")
        handle.n_layers, handle.d_model   # (24, 896)
    """
    from refusalscope.models.handle import ModelHandle, RuntimeOptions

    opts = RuntimeOptions(device=device or "auto", dtype=dtype or "auto",
                          trust_remote_code=trust_remote_code)
    return ModelHandle.load(str(model), adapter=adapter, options=opts)


def prompts(split: str = "eval", *, n: int | None = None, harmless: bool = False,
            file: str | Path | None = None) -> list[Prompt]:
    """Requests from a built split (`refusalscope data build` first) or from a prompt file
    (CSV / TSV / JSONL / JSON / parquet with a `prompt` column); the first `n` in a fixed order.

    Example:
        reqs = rs.prompts("eval", n=8)
        reqs[0].prompt, reqs[0].target   # request text, AdvBench-style target or None
    """
    from refusalscope.data.load import load_prompt_file, load_split

    if file is None:
        return load_split(split, harmless=harmless, n=n)
    got = load_prompt_file(file, label="harmless" if harmless else "harmful")
    return got if n is None else got[:n]


def _as_prompts(requests: Sequence[Request] | Request) -> list[Prompt]:
    """`Prompt`s with unique ids, in order, from texts, `(text, target)` pairs or `Prompt`s.
    A lone string, pair or `Prompt` is one request (so a tuple of two strings is a pair: pass
    several requests as a list)."""
    from dataclasses import replace

    from refusalscope.data.load import Prompt

    if isinstance(requests, (str, Prompt)) or (isinstance(requests, tuple) and len(requests) == 2
                                               and all(isinstance(x, str) for x in requests)):
        requests = [requests]
    out: list[Prompt] = []
    seen: set[str] = set()
    for i, r in enumerate(requests):
        if isinstance(r, Prompt):
            out.append(r if r.id not in seen else replace(r, id=f"{r.id}#{i}"))
        elif isinstance(r, str):
            out.append(Prompt(id=f"r{i}", prompt=r, split="user", label="harmful", source="api"))
        elif isinstance(r, (tuple, list)) and len(r) == 2 and all(isinstance(x, str) for x in r):
            out.append(Prompt(id=f"r{i}", prompt=r[0], split="user", label="harmful",
                              source="api", target=r[1]))
        else:
            raise UserError(f"request {i} is a {type(r).__name__}: give a string, a "
                            "(request, target) pair or a Prompt")
        seen.add(out[-1].id)
    if not out:
        raise UserError("no requests given")
    return out


def _handle(handle: ModelHandle | str | Path) -> ModelHandle:
    return load(handle) if isinstance(handle, (str, Path)) else handle


def generate(handle: ModelHandle | str, requests: Sequence[Request] | Request, *,
             max_new_tokens: int | None = None, batch_size: int = 16, steer: Any = None,
             system: str | None = None, temperature: float = 0.0, seed: int = 0) -> list[str]:
    """One response per request, in the order given (greedy unless `temperature` > 0).

    Runs the batched, KV-cached loop of `refusalscope generate` (`generate.generate_rows`) with
    its chat formatting. `max_new_tokens` (tokens; default: `GenerateConfig`'s), `batch_size`
    (prompts per forward). `steer`: an intervention during generation, as a steer spec string
    (`"ablate:DIRS.h5"`, `"add:DIRS.h5:alpha=4"`, see `interp.steering`), a `SteerSpec`, or a
    list of `(site, fn)` hooks (`interp.steering.add_hooks(...)`).

    Example:
        rs.generate(handle, ["Write a haiku about rain."], max_new_tokens=24)
    """
    from refusalscope.generation import GenerateConfig, generate_rows

    h = _handle(handle)
    batch = _as_prompts(requests)
    kw = {} if max_new_tokens is None else {"max_new_tokens": max_new_tokens}
    cfg = GenerateConfig(model=h.name, n=len(batch), system_prompt=system,
                         temperature=temperature, seed=seed, **kw)
    rows = {r["id"]: r["response"] for r in generate_rows(
        h, batch, cfg, batch_size=batch_size, interventions=_steer_hooks(h, steer))}
    return [rows[p.id] for p in batch]


def _steer_hooks(handle: ModelHandle, steer: Any) -> list[Any]:
    if steer is None:
        return []
    from refusalscope.interp.steering import SteerSpec

    if isinstance(steer, str):
        steer = SteerSpec.parse(steer, handle.n_layers)
    if isinstance(steer, SteerSpec):
        return steer.resolve().hooks(handle)
    return list(steer)


def score(requests: Sequence[Request] | Request, responses: Sequence[str] | str, *,
          scorer: str | Scorer = "study", targets: Sequence[str | None] | None = None,
          relevance: bool = True) -> list[dict[str, Any]]:
    """Label each (request, response) pair as `refusalscope score` does.

    Per row: `refused` (bool), `outcome` (refused | complied | degenerate), `matched` (why it
    was refused: `classifier`, `heuristic:<list>:<phrase>`, ...; None when not), `degeneracy`
    (reasons such as `off_topic`, `repetitive`, `echo`), `p_refused` and `p_off_topic`
    (probabilities in [0, 1], only from scorers and checks that give them), `scorer` (the one
    that decided). Responses are judged against the bare request and its target (`targets`, or
    the targets of `(request, target)` pairs); `relevance=False` skips the on-topic check
    (which embeds with MiniLM).

    `scorer`: a name from `scoring.factory` or any `Scorer`. `study` (default): the ensemble
    once `refusalscope score train-classifier` has run, else the heuristic with a warning (what
    studies and attack evaluations use); `ensemble` (trained classifier + phrase heuristic) and
    `classifier` are a `UserError` until then; `heuristic` is the phrase matcher alone.

    Example:
        rs.score(["How do I pick a lock?"], ["I'm sorry, I can't help with that."])[0]
        # {'refused': True, 'outcome': 'refused', 'matched': 'heuristic:...', ...}
    """
    from refusalscope.scoring.factory import scorer as make_scorer
    from refusalscope.scoring.score import label_outcomes

    reqs = _as_prompts(requests)
    resp = [responses] if isinstance(responses, str) else list(responses)
    if len(reqs) != len(resp):
        raise UserError(f"{len(reqs)} requests but {len(resp)} responses")
    tgts = list(targets) if targets is not None else [p.target for p in reqs]
    sc = make_scorer(scorer) if isinstance(scorer, str) else scorer
    rows = label_outcomes(sc, [p.prompt for p in reqs], resp, tgts, relevance=relevance)
    return [{**row, "scorer": sc.name} for row in rows]


def attack(name: str, handle: ModelHandle | str, requests: Sequence[Request] | Request, *,
           evaluate: bool = False, progress: Callable[[dict[str, Any]], None] | None = None,
           **config: Any) -> AttackResult:
    """Run attack `name` (gcg, autodan, template, lora, or one you registered with
    `attacks.registry.register`) on `handle` in memory, like `nanogcg.run`; no run folder.

    `requests`: texts, `(request, target)` pairs or `Prompt`s (prompt attacks optimise towards
    the target; a bare text gets the attack's default target). `config`: fields of the
    attack's config class (`attacks.gcg.GCGConfig`, ...; defaults are the config's own).
    `progress(row)` sees each step's log row. `evaluate=True` also sends every request bare
    and attacked (greedy, 64 new tokens) and scores the responses as `refusalscope attack`
    does, filling `groups` (ASR = share complied, with bootstrap and Wilson 95% CIs) and
    `rows`. Returns the common `AttackResult`: `artefact` (GCG: `suffix`), `loss`, `log`,
    `compute` (ledger FLOPs in `compute["flops"]`), for prompt attacks `attacked` (one
    `{"request": i, "prompt": attacked text, ...}` per attacked text of request i), and
    `asr` once evaluated.

    Example:
        res = rs.attack("gcg", handle, [("How do I pick a lock?", "Sure, here is how")],
                        steps=20, search_width=64, evaluate=True)
        res.artefact["suffix"], res.loss, res.asr
    """
    from refusalscope.attacks.registry import get

    spec = get(name)
    cfg = config_of(spec, "attack", config)
    h, reqs = _handle(handle), _as_prompts(requests)
    result = spec.run(h, reqs, cfg, progress=progress)
    if evaluate:
        from refusalscope.attacks.runner import evaluate as evaluate_result

        return evaluate_result(h, result, reqs)
    if spec.kind == "prompt":  # the attacked texts, as evaluation would fill them
        from dataclasses import replace

        result = replace(result, attacked=spec.apply(h, result, reqs))
    return result


def defend(name: str, handle: ModelHandle | str, *,
           progress: Callable[[dict[str, Any]], None] | None = None,
           **config: Any) -> DefenseResult:
    """Run defense `name` (tar, steer, or one you registered with `defenses.registry.register`)
    on `handle` in memory; no run folder is kept and `handle` stays undefended.

    `config`: fields of the defense's config class (`defenses.tar.TarConfig`,
    `defenses.steer.SteerDefenseConfig`; defaults are the config's own, `model` the handle's
    name). `progress(row)` sees each step's (TAR) or alpha's (steer) log row. Returns the
    common `DefenseResult`: `artefact` (TAR: the defended `model` folder; steer: the chosen
    `alpha` and `steer` spec), `compute` (ledger FLOPs in `flops`), `log`, and `handle`, the
    defended handle (TAR: the defended weights; steer: the attacked model with the direction
    added back whenever it generates), ready for `rs.generate` or `rs.attack`.

    Example:
        res = rs.defend("steer", attacked, directions="runs/sweep/directions.h5",
                        alphas=(0, 1, 2), n=16, skip=96)
        res.artefact["alpha"], rs.generate(res.handle, ["How do I pick a lock?"])
    """
    from refusalscope.defenses.registry import get
    from refusalscope.defenses.runner import defend as run_in_memory

    return run_in_memory(get(name), _handle(handle), progress=progress, **config)


class Study:
    """A study spec (shipped name such as `"quickstart"`, a `.toml` path, or a dict of the same
    tables) expanded into its graph of runs under `$REFUSALSCOPE_ARTIFACTS/studies/<name>/`.

    Example:
        study = rs.Study("quickstart")
        study.plan()["cpu_min"]       # estimated CPU minutes before anything runs
        study.run().report()          # Path of report.md
    """

    def __init__(self, spec: str | Path | dict[str, Any], *, root: str | Path | None = None):
        from refusalscope.study.executor import study_dir
        from refusalscope.study.graph import expand
        from refusalscope.study.spec import load_spec, parse_spec

        # a dict's relative paths (eval.prompts, pairs files, model folders) are from the cwd
        self.spec = (parse_spec(dict(spec), base=Path.cwd()) if isinstance(spec, dict)
                     else load_spec(str(spec)))
        self.nodes = expand(self.spec)
        self.path = study_dir(self.spec.name, Path(root) if root is not None else None)
        self.outcome: Outcome | None = None

    def plan(self) -> dict[str, Any]:
        """Nodes not done yet and their estimated cost: `nodes`, `flops`, `cpu_min` (minutes
        on the shipped CPU rates), per-node `costs`."""
        from refusalscope.study import plan as cost

        state = self.status()
        costs = cost.estimate([n for n in self.nodes if state[n.id] != "done"])
        return {**cost.totals(costs), "costs": costs}

    def status(self) -> dict[str, str]:
        """Node id -> done | running | failed | pending."""
        from refusalscope.study.executor import node_state

        return {n.id: node_state(self.path, n) for n in self.nodes}

    def run(self, *, max_retries: int = 2, check: bool = True,
            on_node: Callable[[Any, dict[str, Any]], None] | None = None) -> Study:
        """Run every node not done yet, in this process (finished nodes are skipped,
        interrupted ones resumed); `self.outcome` says what ran. `check`: raise a
        `RuntimeError` naming failed or blocked nodes. Returns `self`."""
        from refusalscope.study.executor import run_local, study_lock, write_spec

        with study_lock(self.path):
            write_spec(self.path, self.spec.to_dict(), self.nodes)
            self.outcome = run_local(self.path, self.nodes, max_retries=max_retries,
                                     on_node=on_node)
        bad = {**self.outcome.failed, **self.outcome.blocked}
        if check and bad:
            raise RuntimeError(f"study {self.spec.name}: {len(self.outcome.failed)} failed, "
                               f"{len(self.outcome.blocked)} blocked: "
                               + "; ".join(f"{k}: {v}" for k, v in list(bad.items())[:3]))
        return self

    def results(self) -> list[dict[str, Any]]:
        """One row per scored generation (the rows of the report's `results.csv`)."""
        from refusalscope.study.report import results

        return results(self.nodes, self.path)

    def report(self, out: str | Path | None = None, *, n_boot: int = 1000,
               **options: Any) -> Path:
        """Write a report folder (default `<study>/reports/<UTC time>`) as `refusalscope study
        report` does; `options`: `c_axis`, `include_controls`, `n_kind`. Returns report.md."""
        import datetime as dt

        from refusalscope.study.report import write_report

        stamp = dt.datetime.now(dt.UTC).strftime("%Y%m%dT%H%M%SZ")
        folder = Path(out) if out is not None else self.path / "reports" / stamp
        return write_report(self.spec, self.nodes, self.path, folder, n_boot=n_boot, **options)
