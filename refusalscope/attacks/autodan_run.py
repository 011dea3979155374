"""`attack autodan` as a run folder: requests in, evolved jailbreak prompt, logs, state, evaluation.

Files: `autodan.jsonl` (one row per generation: best and mean target loss, target hit, greedy
check, wall time), `state.json` (population, losses, momentum word table, RNG, compute;
rewritten atomically after every generation: what `--resume` reads), `attacked_prompts.jsonl`
(the rendered jailbreak prompt per request; `refusalscope generate --prompts` reads it),
`eval.jsonl` (greedy responses with and without the jailbreak; refusal label and outcome by
the study's scorer, judged against the bare request and its target, never the jailbreak
template) and `result.json` (best text, loss, ASR = share `complied` and the share not
refused, with 95% CIs, compute).
"""

from __future__ import annotations

import hashlib
import json
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

from refusalscope.attacks.autodan import AutoDANConfig, AutoDANState, run
from refusalscope.attacks.autodan_prompts import render
from refusalscope.attacks.gcg_run import DEFAULT_TARGET, asr_results, evaluate_pairs, load_requests
from refusalscope.errors import UserError

LOG, STATE, ATTACKED, EVAL, RESULT = ("autodan.jsonl", "state.json", "attacked_prompts.jsonl",
                                      "eval.jsonl", "result.json")


@dataclass(frozen=True)
class AutoDANRunConfig:
    """A whole `attack autodan` invocation: model, requests, the search config, evaluation.

    `n` > 1 searches one prompt for `n` requests at once (fitness averaged over them).
    `texts_file`: starting texts, one per line, instead of the prototype and prompt group
    (its sha256 is kept so a resumed run can tell the file changed).
    """

    model: str
    autodan: dict[str, Any]
    split: str = "attack-train"
    n: int = 1
    skip: int = 0
    prompt: str | None = None
    target: str | None = None
    adapter: str | None = None
    n_eval: int = 0
    max_new_tokens: int = 64
    texts_file: str | None = None
    texts_sha256: str | None = None

    def __post_init__(self) -> None:
        AutoDANConfig.from_dict(self.autodan)  # validates
        if self.n < 1 or self.n_eval < 0 or self.max_new_tokens < 1:
            raise UserError("--n and --max-new-tokens must be at least 1, --n-eval at least 0")
        if self.skip < 0:
            raise UserError(f"--skip must be at least 0 (got {self.skip})")
        if self.target is not None and self.prompt is None:
            raise UserError("--target needs --prompt (split prompts bring their own targets)")
        if self.n_eval and self.prompt is None and self.split == "eval":
            raise UserError("--n-eval tests on held-out `eval` prompts: optimise on another split")
        if self.prompt is not None and self.n != 1:
            raise UserError("--prompt is one request: leave --n at 1")

    @property
    def autodan_config(self) -> AutoDANConfig:
        return AutoDANConfig.from_dict(self.autodan)

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> AutoDANRunConfig:
        return cls(**{k: v for k, v in d.items() if k in cls.__dataclass_fields__})


def read_texts(path: str | Path) -> tuple[list[str], str]:
    """Starting texts from a file (one per line, blank lines skipped) and the file's sha256."""
    p = Path(path)
    if not p.is_file():
        raise UserError(f"no texts file {p}")
    data = p.read_bytes()
    texts = [ln.strip() for ln in data.decode("utf-8").splitlines() if ln.strip()]
    if not texts:
        raise UserError(f"{p} holds no texts (one jailbreak text per line)")
    return texts, hashlib.sha256(data).hexdigest()


def _requests(cfg: AutoDANRunConfig) -> list[Any]:
    return load_requests(cfg.split, cfg.n, cfg.skip, cfg.prompt, cfg.target)


def _texts(cfg: AutoDANRunConfig) -> list[str] | None:
    if cfg.texts_file is None:
        return None
    texts, sha = read_texts(cfg.texts_file)
    if cfg.texts_sha256 is not None and sha != cfg.texts_sha256:
        raise UserError(f"{cfg.texts_file} changed since the run started (sha256 differs)")
    return texts


def _open_resume(resume: str) -> tuple[Any, AutoDANRunConfig, AutoDANState | None]:
    from refusalscope.fileio import read_jsonl, write_jsonl
    from refusalscope.runs import Run

    run_ = Run.open(resume)
    if run_.manifest.command != "attack-autodan":
        raise UserError(f"{run_.id} is a {run_.manifest.command!r} run, not attack-autodan")
    if run_.manifest.status == "success":
        raise UserError(f"{run_.id} has finished; start a new run instead of --resume")
    cfg = AutoDANRunConfig.from_dict(run_.manifest.config)
    state = None
    if run_.file(STATE).is_file():
        state = AutoDANState.from_dict(json.loads(run_.file(STATE).read_text()))
        done = [r for r in read_jsonl(run_.file(LOG)) if r["generation"] <= state.logged]
        write_jsonl(run_.file(LOG), done)  # drop rows logged after the saved state
    return run_, cfg, state


def run_autodan(cfg: AutoDANRunConfig, *, options: Any = None, batch_size: int | None = None,
                resume: str | None = None, on_generation: Any = None) -> Any:
    """Search, log every generation, evaluate; returns the finished `Run`."""
    from refusalscope.data.load import load_split
    from refusalscope.fileio import append_jsonl, atomic_write_json, write_jsonl
    from refusalscope.models.handle import ModelHandle
    from refusalscope.models.registry import size_fields
    from refusalscope.runs import Run

    state = None
    if resume is not None:
        run_, cfg, state = _open_resume(resume)
    requests, texts = _requests(cfg), _texts(cfg)
    heldout = load_split("eval", n=cfg.n_eval) if cfg.n_eval else []
    handle = ModelHandle.load(cfg.model, adapter=cfg.adapter, options=options)
    if resume is None:
        run_ = Run.create("attack-autodan", cfg.to_dict(), model=cfg.model,
                          seed=cfg.autodan_config.seed, harmful_content=True)

    def gen_cb(row: dict[str, Any], st: AutoDANState) -> None:
        append_jsonl(run_.file(LOG), row)
        atomic_write_json(run_.file(STATE), st.to_dict())
        if on_generation is not None:
            on_generation(row)

    try:
        res = run(handle, [(p.prompt, p.target or DEFAULT_TARGET) for p in requests],
                  cfg.autodan_config, batch_size=batch_size, state=state, texts=texts,
                  on_generation=gen_cb)
        attacked = [dict(p.to_dict(), prompt=text, goal=p.prompt)
                    for p, text in zip(requests, res.prompts, strict=True)]
        write_jsonl(run_.file(ATTACKED), attacked)
        pairs = list(zip(requests, res.prompts, strict=True))
        pairs += [(p, render(res.body, p.prompt, res.name, res.developer)) for p in heldout]
        rows = evaluate_pairs(handle, pairs, cfg.max_new_tokens)
        write_jsonl(run_.file(EVAL), rows)
        split = requests[0].split
        result = {"body": res.body, "name": res.name, "developer": res.developer,
                  "loss": res.loss, "target_hit": res.target_hit, "stop": res.stop,
                  "generations": res.compute.steps, "n_requests": len(requests),
                  **asr_results(rows, split, bool(heldout)),
                  "compute": res.compute.to_dict()}
        atomic_write_json(run_.file(RESULT), result)
        run_.manifest.extra["compute"] = res.compute.to_dict()
        run_.manifest.extra["model"] = {"source": handle.source, "n_params": handle.n_params(),
                                        **size_fields(handle),
                                        "adapter": handle.adapter}
    except BaseException as e:
        run_.finish("error", error=f"{type(e).__name__}: {e}"[:500])
        raise
    run_.finish("success")  # resumable until here: --resume refuses a finished run
    return run_
