"""`refusalscope attack gcg`."""

from __future__ import annotations

import typer

from refusalscope.cli._common import user_errors


def register(group: typer.Typer) -> None:
    """Add `gcg` to the `attack` group."""
    group.command("gcg")(gcg)


@user_errors
def gcg(
    model: str | None = typer.Option(None, "--model", "-m", help="Registry name, local folder or hub id."),
    universal: bool = typer.Option(False, "--universal", help="One suffix over --n prompts, added progressively."),
    split: str = typer.Option("attack-train", help="Split the prompts (and their targets) come from."),
    n: int = typer.Option(1, "--n", help="Universal: number of prompts optimised over."),
    skip: int = typer.Option(0, "--skip", help="Start at this prompt of the split."),
    prompt: str | None = typer.Option(None, "--prompt", help="Attack this text instead of a split prompt."),
    target: str | None = typer.Option(None, "--target", help="Target reply prefix for --prompt."),
    n_eval: int = typer.Option(0, "--n-eval", help="Held-out `eval` prompts to test the suffix on."),
    adapter: str | None = typer.Option(None, help="peft adapter folder, or a run folder holding one."),
    steer: str | None = typer.Option(None, "--steer", help="Attack the model under a hook intervention: ablate:DIRS.h5 or add:DIRS.h5[:alpha=A][:layers=L] (as `generate --steer`); the file's sha256 is saved with the run."),
    steps: int = typer.Option(250, "--steps"),
    search_width: int = typer.Option(512, "--search-width"),
    topk: int = typer.Option(256, "--topk"),
    suffix_len: int = typer.Option(20, "--suffix-len"),
    n_replace: int = typer.Option(1, "--n-replace"),
    buffer_size: int = typer.Option(0, "--buffer-size", help="0: move to each step's best candidate (nanoGCG default); N: keep the N best, move only on improvement."),
    add_every: int = typer.Option(20, "--add-every", help="Universal: add the next prompt after this many steps at the latest."),
    early_stop: bool = typer.Option(False, "--early-stop", help="Stop once greedy decoding hits every target."),
    allow_non_ascii: bool = typer.Option(False, "--allow-non-ascii"),
    max_new_tokens: int = typer.Option(64, "--max-new-tokens", help="Evaluation response length."),
    seed: int = typer.Option(0),
    batch_size: int | None = typer.Option(None, "--batch-size", help="Candidates per forward (default: CUDA as many as free memory holds, CPU all; halved on out-of-memory)."),
    device: str = typer.Option("auto"),
    dtype: str = typer.Option("auto"),
    resume: str | None = typer.Option(None, help="Continue an interrupted attack-gcg run from its last step."),
) -> None:
    """Optimise an adversarial suffix with GCG; writes gcg.jsonl, result.json and attacked prompts."""
    from refusalscope.attacks.gcg import GCGConfig
    from refusalscope.attacks.gcg_run import GCGRunConfig, run_gcg
    from refusalscope.errors import UserError
    from refusalscope.interp.steering import pin_spec
    from refusalscope.models.handle import RuntimeOptions

    cfg = None
    if resume is None:
        if model is None:
            raise UserError("--model is required (or --resume RUN)")
        gcfg = GCGConfig(steps=steps, search_width=search_width, topk=topk, suffix_len=suffix_len,
                         n_replace=n_replace, buffer_size=buffer_size, early_stop=early_stop,
                         allow_non_ascii=allow_non_ascii, seed=seed, add_every=add_every)
        cfg = GCGRunConfig(model=model, gcg=gcfg.to_dict(),
                           mode="universal" if universal else "individual", split=split, n=n,
                           skip=skip, prompt=prompt, target=target, adapter=adapter, steer=pin_spec(steer),
                           n_eval=n_eval, max_new_tokens=max_new_tokens)
    if batch_size is not None and batch_size < 1:
        raise UserError(f"--batch-size must be at least 1 (got {batch_size})")
    opts = RuntimeOptions(device=device, dtype=dtype)

    def on_step(row: dict) -> None:  # type: ignore[type-arg]
        typer.echo(f"step {row['step']}: loss {row['loss']:.4f} ({row['wall_s']:.2f} s, "
                   f"{row['candidates']} candidates, {row['n_active']} prompts)", err=True)

    if cfg is None:
        from refusalscope.runs import Run

        cfg = GCGRunConfig.from_dict(Run.open(resume).manifest.config)  # type: ignore[arg-type]
    run = run_gcg(cfg, options=opts, batch_size=batch_size, resume=resume, on_step=on_step)
    print_asr(run.file("result.json"))
    typer.echo(str(run.path))


def _rate(block: dict, key: str | None = None) -> str:  # type: ignore[type-arg]
    b = block if key is None else block[key]
    rate = b["asr"] if key is None else b["rate"]
    k = b["successes"]
    lo, hi = b["wilson95"]
    return f"{k}/{block['n']} = {rate:.1%} (Wilson 95% [{lo:.1%}, {hi:.1%}])"


def print_asr(path) -> None:  # type: ignore[no-untyped-def]
    """ASR (substantive: outcome `complied`) and the share not refused, per prompt group."""
    import json

    result = json.loads(path.read_text())
    typer.echo(f"ASR = share complied (substantive: not refused, not an echo, loop, error, "
               f"persona chatter or off-topic) by the {result.get('scorer')} scorer; "
               "not refused = share without a refusal:")
    for name, block in result.get("asr_ci", {}).items():
        if block["n"]:
            typer.echo(f"  {name:<20} ASR {_rate(block)}; not refused "
                       f"{_rate(block, 'not_refused')}")
