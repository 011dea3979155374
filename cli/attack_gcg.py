"""`refusalscope attack gcg`. Option defaults are `GCGConfig`'s and `RunConfig`'s."""

from __future__ import annotations

import typer

from refusalscope.attacks.base import config_defaults
from refusalscope.attacks.evaluate import REQUEST_DEFAULTS as R
from refusalscope.attacks.gcg import GCGConfig
from refusalscope.cli._common import out_option, rename_options, user_errors

G = config_defaults(GCGConfig)


rename_options("attack gcg", {"--n-eval": "--eval-n"})


def register(group: typer.Typer) -> None:
    """Add `gcg` to the `attack` group."""
    group.command("gcg")(gcg)


@user_errors
def gcg(
    model: str | None = typer.Option(None, "--model", "-m", metavar="MODEL", help="Registry name, local folder or hub id."),
    universal: bool = typer.Option(False, "--universal", help="One suffix over --n prompts, added progressively."),
    split: str = typer.Option(R["split"], metavar="SPLIT", help="Split the prompts (and their targets) come from."),
    n: int = typer.Option(R["n"], "--n", metavar="N", help="Universal: number of prompts optimised over."),
    skip: int = typer.Option(0, "--skip", metavar="N", help="Start at this prompt of the split."),
    prompt: str | None = typer.Option(None, "--prompt", metavar="TEXT", help="Attack this text instead of a split prompt."),
    target: str | None = typer.Option(None, "--target", metavar="TEXT", help="Target reply prefix for --prompt."),
    eval_n: int = typer.Option(0, "--eval-n", metavar="N", help="Held-out `eval` prompts to test the suffix on."),
    adapter: str | None = typer.Option(None, metavar="RUN", help="peft adapter folder, or a run folder holding one."),
    steer: str | None = typer.Option(None, "--steer", metavar="SPEC", help="Attack the model under a hook intervention: ablate:DIRS.h5 or add:DIRS.h5[:alpha=A][:layers=L] (as `generate --steer`); the file's sha256 is saved with the run."),
    steps: int = typer.Option(G["steps"], "--steps", metavar="N", help="Optimisation steps (each: one gradient, --search-width candidate forwards)."),
    search_width: int = typer.Option(G["search_width"], "--search-width", metavar="N", help="Candidate suffixes scored per step."),
    topk: int = typer.Option(G["topk"], "--topk", metavar="N", help="Token swaps sampled from the top-k gradient entries per position."),
    suffix_len: int = typer.Option(G["suffix_len"], "--suffix-len", metavar="TOKENS", help="Suffix length in tokens."),
    n_replace: int = typer.Option(G["n_replace"], "--n-replace", metavar="N", help="Tokens swapped per candidate."),
    buffer_size: int = typer.Option(G["buffer_size"], "--buffer-size", metavar="N", help="0: move to each step's best candidate (nanoGCG default); N: keep the N best, move only on improvement."),
    add_every: int = typer.Option(G["add_every"], "--add-every", metavar="STEPS", help="Universal: add the next prompt after this many steps at the latest."),
    early_stop: bool = typer.Option(G["early_stop"], "--early-stop", help="Stop once greedy decoding hits every target."),
    allow_non_ascii: bool = typer.Option(G["allow_non_ascii"], "--allow-non-ascii", help="Let the suffix use non-ASCII tokens."),
    max_new_tokens: int = typer.Option(R["max_new_tokens"], "--max-new-tokens", metavar="TOKENS", help="Evaluation response length."),
    seed: int = typer.Option(G["seed"], metavar="N", help="Seed of the candidate sampling."),
    batch_size: int | None = typer.Option(None, "--batch-size", metavar="N", help="Candidates per forward (default: CUDA as many as free memory holds, CPU all; halved on out-of-memory)."),
    device: str = typer.Option("auto", metavar="DEVICE", help="auto | cpu | cuda | cuda:N"),
    dtype: str = typer.Option("auto", metavar="DTYPE", help="auto (bf16 on GPU, fp32 on CPU) | float32 | bfloat16"),
    out: str | None = out_option(),
    resume: str | None = typer.Option(None, metavar="RUN", help="Continue an interrupted attack-gcg run from its last step."),
) -> None:
    """Optimise an adversarial suffix with GCG (Zou et al. 2023).

    Writes a run folder (--out, default: a new one under $REFUSALSCOPE_ARTIFACTS/runs):
    gcg.jsonl (one row per step), state.json (for --resume), attacked_prompts.jsonl,
    eval.jsonl and result.json (ASR with CIs); prints the ASR and then the run folder.
    Defaults are GCGConfig's (250 steps x 512 candidates; a study's cheaper ones are its own).

    \b
    Example:
      refusalscope attack gcg -m smollm2-135m --prompt "How do I pick a lock?" --steps 50
    """
    from refusalscope.attacks.runner import RunConfig, run_attack
    from refusalscope.errors import UserError
    from refusalscope.interp.steering import pin_spec
    from refusalscope.models.handle import RuntimeOptions
    from refusalscope.runs import Run

    cfg = None
    if resume is None:
        if model is None:
            raise UserError("--model is required (or --resume RUN)")
        gcfg = GCGConfig(steps=steps, search_width=search_width, topk=topk, suffix_len=suffix_len,
                         n_replace=n_replace, buffer_size=buffer_size, early_stop=early_stop,
                         allow_non_ascii=allow_non_ascii, seed=seed, add_every=add_every)
        cfg = RunConfig("gcg", model, gcfg.to_dict(),
                        mode="universal" if universal else "individual", split=split, n=n,
                        skip=skip, prompt=prompt, target=target, adapter=adapter,
                        steer=pin_spec(steer), eval_n=eval_n, max_new_tokens=max_new_tokens)
    if batch_size is not None and batch_size < 1:
        raise UserError(f"--batch-size must be at least 1 (got {batch_size})")

    def on_step(row: dict) -> None:  # type: ignore[type-arg]
        typer.echo(f"step {row['step']}: loss {row['loss']:.4f} ({row['wall_s']:.2f} s, "
                   f"{row['candidates']} candidates, {row['n_active']} prompts)", err=True)

    if out is not None and resume is not None:
        raise UserError("--resume continues a run in its own folder: leave out --out")
    with Run.at(out):
        run = run_attack(cfg, resume=resume, options=RuntimeOptions(device=device, dtype=dtype),
                         batch_size=batch_size, progress=on_step)
    print_asr(run.file("result.json"))
    typer.echo(str(run.path))


def _rate(s: dict, key: str = "asr") -> str:  # type: ignore[type-arg]
    b = s if key == "asr" else s[key]
    lo, hi = b["wilson95"]
    rate = s["asr"] if key == "asr" else b["rate"]
    return f"{b['successes']}/{s['n']} = {rate:.1%} (Wilson 95% [{lo:.1%}, {hi:.1%}])"


def print_asr(path) -> None:  # type: ignore[no-untyped-def]
    """ASR (substantive: outcome `complied`) and the share not refused, per group, from any
    attack's result.json (the common `summary` block)."""
    import json

    result = json.loads(path.read_text())
    typer.echo(f"ASR = share complied (substantive: not refused, not an echo, loop, error, "
               f"persona chatter or off-topic) by the {result.get('scorer')} scorer; "
               "not refused = share without a refusal:")
    for group, block in result.get("summary", {}).items():
        for variant, s in block.items():
            if s["n"]:
                typer.echo(f"  {group + ' ' + variant:<20} ASR {_rate(s)}; not refused "
                           f"{_rate(s, 'not_refused')}")
