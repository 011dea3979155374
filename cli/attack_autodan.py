"""`refusalscope attack autodan`. Option defaults are `AutoDANConfig`'s and `RunConfig`'s."""

from __future__ import annotations

import typer

from refusalscope.attacks.autodan import AutoDANConfig
from refusalscope.attacks.base import config_defaults
from refusalscope.attacks.evaluate import REQUEST_DEFAULTS as R
from refusalscope.cli._common import out_option, rename_options, user_errors

A = config_defaults(AutoDANConfig)


rename_options("attack autodan", {"--n-eval": "--eval-n"})


def register(group: typer.Typer) -> None:
    """Add `autodan` to the `attack` group."""
    group.command("autodan")(autodan)


@user_errors
def autodan(
    model: str | None = typer.Option(None, "--model", "-m", metavar="MODEL", help="Registry name, local folder or hub id."),
    split: str = typer.Option(R["split"], metavar="SPLIT", help="Split the requests (and their targets) come from."),
    n: int = typer.Option(R["n"], "--n", metavar="N", help="Requests one prompt is searched for (fitness averaged over them)."),
    skip: int = typer.Option(0, "--skip", metavar="N", help="Start at this prompt of the split."),
    prompt: str | None = typer.Option(None, "--prompt", metavar="TEXT", help="Attack this request instead of a split prompt."),
    target: str | None = typer.Option(None, "--target", metavar="TEXT", help="Target reply prefix for --prompt."),
    eval_n: int = typer.Option(0, "--eval-n", metavar="N", help="Held-out `eval` prompts to test the best prompt on."),
    adapter: str | None = typer.Option(None, metavar="RUN", help="peft adapter folder, or a run folder holding one."),
    texts: str | None = typer.Option(None, "--texts", metavar="FILE", help="Starting texts, one per line (default: AutoDAN prototype + prompt group)."),
    population: int = typer.Option(A["population"], "--population", metavar="N", help="Texts per generation, 2 to 256 (paper: 256; past the 129 starting texts, word-replaced copies)."),
    generations: int = typer.Option(A["generations"], "--generations", metavar="N", help="Generations of the genetic search."),
    elite_frac: float = typer.Option(A["elite_frac"], "--elite-frac", metavar="FRACTION", help="Share of each generation kept unchanged (the best)."),
    crossover_rate: float = typer.Option(A["crossover_rate"], "--crossover-rate", metavar="P", help="Probability that a pair of parents is crossed over."),
    n_points: int = typer.Option(A["n_points"], "--n-points", metavar="N", help="Crossover cut points (sentence positions)."),
    word_swaps: int = typer.Option(A["word_swaps"], "--word-swaps", metavar="N", help="Words replaced per paragraph of every child (HGA: 5; 0 turns replacement off)."),
    max_prompt_tokens: int = typer.Option(A["max_prompt_tokens"], "--max-prompt-tokens", metavar="TOKENS", help="Longer texts are left out or rejected."),
    early_stop: bool = typer.Option(A["early_stop"], "--early-stop/--no-early-stop", help="Stop once the best prompt hits the target or its greedy reply does not refuse."),
    check_tokens: int = typer.Option(A["check_tokens"], "--check-tokens", metavar="TOKENS", help="Greedy reply length for the early-stop check."),
    name: str | None = typer.Option(A["name"], "--name", metavar="TEXT", help="Fills 'ChatGPT' in the templates (default: from the model)."),
    developer: str | None = typer.Option(A["developer"], "--developer", metavar="TEXT", help="Fills 'ModelKeeper' (default: from the model)."),
    max_new_tokens: int = typer.Option(R["max_new_tokens"], "--max-new-tokens", metavar="TOKENS", help="Evaluation response length."),
    seed: int = typer.Option(A["seed"], metavar="N", help="Seed of the genetic operators."),
    batch_size: int | None = typer.Option(None, "--batch-size", metavar="N", help="Prompts per forward (default: all, halved on out-of-memory)."),
    device: str = typer.Option("auto", metavar="DEVICE", help="auto | cpu | cuda | cuda:N"),
    dtype: str = typer.Option("auto", metavar="DTYPE", help="auto (bf16 on GPU, fp32 on CPU) | float32 | bfloat16"),
    out: str | None = out_option(),
    resume: str | None = typer.Option(None, metavar="RUN", help="Continue an interrupted attack-autodan run from its last generation."),
) -> None:
    """Evolve a jailbreak prompt with AutoDAN-HGA's genetic search (Liu et al. 2024).

    Writes a run folder (--out, default: a new one under $REFUSALSCOPE_ARTIFACTS/runs):
    autodan.jsonl (one row per generation), state.json (for --resume),
    attacked_prompts.jsonl, eval.jsonl and result.json (ASR with CIs); prints the ASR and then
    the run folder. Defaults are AutoDANConfig's.

    \b
    Example:
      refusalscope attack autodan -m smollm2-135m --n 4 --generations 20
    """
    from pathlib import Path

    from refusalscope.attacks.autodan_run import read_texts
    from refusalscope.attacks.runner import RunConfig, run_attack
    from refusalscope.cli.attack_gcg import print_asr
    from refusalscope.errors import UserError
    from refusalscope.models.handle import RuntimeOptions
    from refusalscope.runs import Run

    if batch_size is not None and batch_size < 1:
        raise UserError(f"--batch-size must be at least 1 (got {batch_size})")
    cfg = None
    if resume is None:
        if model is None:
            raise UserError("--model is required (or --resume RUN)")
        texts_file = str(Path(texts).resolve()) if texts is not None else None
        acfg = AutoDANConfig(population=population, generations=generations, elite_frac=elite_frac,
                             crossover_rate=crossover_rate, n_points=n_points,
                             word_swaps=word_swaps, max_prompt_tokens=max_prompt_tokens,
                             early_stop=early_stop, check_tokens=check_tokens, seed=seed,
                             name=name, developer=developer, texts_file=texts_file,
                             texts_sha256=read_texts(texts_file)[1] if texts_file else None)
        cfg = RunConfig("autodan", model, acfg.to_dict(), mode="universal", split=split, n=n,
                        skip=skip, prompt=prompt, target=target, adapter=adapter, eval_n=eval_n,
                        max_new_tokens=max_new_tokens)

    def on_generation(row: dict) -> None:  # type: ignore[type-arg]
        check = f", {row['n_refused']} refused" if "n_refused" in row else ""
        typer.echo(f"generation {row['generation']}: best loss {row['best_loss']:.4f}, mean "
                   f"{row['mean_loss']:.4f} ({row['wall_s']:.1f} s{check})", err=True)

    if out is not None and resume is not None:
        raise UserError("--resume continues a run in its own folder: leave out --out")
    with Run.at(out):
        run = run_attack(cfg, resume=resume, options=RuntimeOptions(device=device, dtype=dtype),
                         batch_size=batch_size, progress=on_generation)
    print_asr(run.file("result.json"))
    typer.echo(str(run.path))
