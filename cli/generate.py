"""`refusalscope generate`: batched generation into a run folder."""

from __future__ import annotations

import typer

from refusalscope.cli._common import (
    BATCH_HELP,
    DEVICE_HELP,
    DTYPE_HELP,
    console,
    default,
    out_option,
    user_errors,
)
from refusalscope.generation import GenerateConfig


def register(app: typer.Typer) -> None:
    app.command("generate")(generate)


@user_errors
def generate(
    model: str | None = typer.Option(None, "--model", "-m", help="Registry name, local folder, .gguf file or hub id."),
    split: str = typer.Option(default(GenerateConfig, "split"), help="Built prompt split: attack-train | direction | eval."),
    n: int = typer.Option(default(GenerateConfig, "n"), "--n", help="Number of prompts (the first n of the split or file)."),
    harmless: bool = typer.Option(False, "--harmless", help="Use the harmless contrast set."),
    prompts: str | None = typer.Option(None, "--prompts", metavar="FILE|NAME", help="A CSV/JSONL/parquet prompt file, or a set added by `data import`, instead of a split."),
    adapter: str | None = typer.Option(None, help="peft adapter folder, or a run folder holding one."),
    max_new_tokens: int = typer.Option(default(GenerateConfig, "max_new_tokens"), "--max-new-tokens", help="Tokens generated per response at most."),
    batch_size: int = typer.Option(16, "--batch-size", help=BATCH_HELP),
    seed: int = typer.Option(default(GenerateConfig, "seed"), help="Sampling seed (greedy decoding ignores it)."),
    system_prompt: str | None = typer.Option(None, "--system-prompt", help="System message put before every prompt [default: none]."),
    temperature: float = typer.Option(default(GenerateConfig, "temperature"), help="Sampling temperature; 0 = greedy."),
    top_p: float = typer.Option(default(GenerateConfig, "top_p"), "--top-p", help="Nucleus sampling mass in (0, 1]; 1 = off."),
    device: str = typer.Option("auto", help=DEVICE_HELP),
    dtype: str = typer.Option("auto", help=DTYPE_HELP),
    compile: bool = typer.Option(False, "--compile", help="GPU: static KV cache + torch.compile."),
    resume: str | None = typer.Option(None, help="Resume an interrupted generate run (folder or id); its saved options are used."),
    trust_remote_code: bool = typer.Option(False, "--trust-remote-code", help="Run the model repo's own code (off by default)."),
    baseline: str | None = typer.Option(None, "--baseline", help="A generate run over the same prompts to compare with; `score` then reports Refusal Drift."),
    steer: str | None = typer.Option(None, "--steer", help="ablate:DIRS.h5 or add:DIRS.h5[:alpha=A][:layers=L] (see `refusalscope steer --help`); the file's sha256 is saved with the run."),
    out: str | None = out_option(),
) -> None:
    """Generate responses for harmful (or harmless) prompts; writes generations.jsonl and
    manifest.json in a run folder (under $REFUSALSCOPE_ARTIFACTS/runs, or --out) and prints
    the folder's path. Score it next with `refusalscope score RUN`.

    \b
    Example:
      refusalscope generate -m smollm2-135m --n 8 --max-new-tokens 32 --out runs/base
    """
    from refusalscope.errors import UserError
    from refusalscope.interp.steering import pin_spec
    from refusalscope.models.handle import RuntimeOptions
    from refusalscope.runs import Run

    if resume is not None and out is not None:
        raise UserError("--resume continues its own run folder; drop --out")
    if resume is not None:
        cfg = GenerateConfig.from_dict(Run.open(resume).manifest.config)
    elif model is None:
        raise UserError("--model is required (a name from `refusalscope models list`, a folder, "
                        "a .gguf file or a hub id)")
    else:
        cfg = GenerateConfig(model=model, split=split, n=n, harmless=harmless, prompts_file=prompts,
                             adapter=adapter, max_new_tokens=max_new_tokens, seed=seed,
                             system_prompt=system_prompt, temperature=temperature, top_p=top_p,
                             baseline=baseline, steer=pin_spec(steer))
    opts = RuntimeOptions(device=device, dtype=dtype, trust_remote_code=trust_remote_code)
    with Run.at(out):
        run = _with_progress(cfg, opts, batch_size, resume, compile)
    typer.echo(str(run.path))


def _with_progress(cfg, opts, batch_size, resume, compile):  # type: ignore[no-untyped-def]
    """Run generation with a progress bar (prompts done, tokens/s) shown once work starts."""
    from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn

    from refusalscope.generation import run_generate

    con = console()
    con.stderr = True
    bar = Progress(TextColumn("generate"), BarColumn(), MofNCompleteColumn(), TimeElapsedColumn(),
                   TextColumn("{task.fields[rate]}"), console=con)
    task = bar.add_task("gen", total=None, rate="")
    stats = {"tok": 0, "sec": 0.0}

    def on_start(total: int) -> None:
        bar.update(task, total=total)
        bar.start()

    def on_batch(done: int, new_tokens: int, seconds: float) -> None:
        stats["tok"] += new_tokens
        stats["sec"] += seconds
        bar.update(task, advance=done, rate=f"{stats['tok'] / max(stats['sec'], 1e-9):.1f} tok/s")

    try:
        return run_generate(cfg, options=opts, batch_size=batch_size, resume=resume,
                            static_cache=compile, on_start=on_start, on_batch=on_batch)
    finally:
        bar.stop()
