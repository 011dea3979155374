"""`refusalscope attack autodan`."""

from __future__ import annotations

import typer

from refusalscope.cli._common import user_errors


def register(group: typer.Typer) -> None:
    """Add `autodan` to the `attack` group."""
    group.command("autodan")(autodan)


@user_errors
def autodan(
    model: str | None = typer.Option(None, "--model", "-m", help="Registry name, local folder or hub id."),
    split: str = typer.Option("attack-train", help="Split the requests (and their targets) come from."),
    n: int = typer.Option(1, "--n", help="Requests one prompt is searched for (fitness averaged over them)."),
    skip: int = typer.Option(0, "--skip", help="Start at this prompt of the split."),
    prompt: str | None = typer.Option(None, "--prompt", help="Attack this request instead of a split prompt."),
    target: str | None = typer.Option(None, "--target", help="Target reply prefix for --prompt."),
    n_eval: int = typer.Option(0, "--n-eval", help="Held-out `eval` prompts to test the best prompt on."),
    adapter: str | None = typer.Option(None, help="peft adapter folder, or a run folder holding one."),
    texts: str | None = typer.Option(None, "--texts", help="Starting texts, one per line (default: AutoDAN prototype + prompt group)."),
    population: int = typer.Option(64, "--population", help="Texts per generation, 2 to 256 (paper: 256; past the 129 starting texts, word-replaced copies)."),
    generations: int = typer.Option(100, "--generations"),
    elite_frac: float = typer.Option(0.05, "--elite-frac"),
    crossover_rate: float = typer.Option(0.5, "--crossover-rate"),
    n_points: int = typer.Option(5, "--n-points", help="Crossover cut points (sentence positions)."),
    word_swaps: int = typer.Option(5, "--word-swaps", help="Words replaced per paragraph of every child (HGA: 5; 0 turns replacement off)."),
    max_prompt_tokens: int = typer.Option(1024, "--max-prompt-tokens", help="Longer texts are left out or rejected."),
    early_stop: bool = typer.Option(True, "--early-stop/--no-early-stop", help="Stop once the best prompt hits the target or its greedy reply does not refuse."),
    check_tokens: int = typer.Option(32, "--check-tokens", help="Greedy reply length for the early-stop check."),
    name: str | None = typer.Option(None, "--name", help="Fills 'ChatGPT' in the templates (default: from the model)."),
    developer: str | None = typer.Option(None, "--developer", help="Fills 'ModelKeeper' (default: from the model)."),
    max_new_tokens: int = typer.Option(64, "--max-new-tokens", help="Evaluation response length."),
    seed: int = typer.Option(0),
    batch_size: int | None = typer.Option(None, "--batch-size", help="Prompts per forward (default: all, halved on out-of-memory)."),
    device: str = typer.Option("auto"),
    dtype: str = typer.Option("auto"),
    resume: str | None = typer.Option(None, help="Continue an interrupted attack-autodan run from its last generation."),
) -> None:
    """Evolve a jailbreak prompt with AutoDAN's genetic search; writes autodan.jsonl, result.json
    and attacked prompts."""
    from refusalscope.attacks.autodan import AutoDANConfig
    from refusalscope.attacks.autodan_run import AutoDANRunConfig, read_texts, run_autodan
    from refusalscope.errors import UserError
    from refusalscope.models.handle import RuntimeOptions

    if batch_size is not None and batch_size < 1:
        raise UserError(f"--batch-size must be at least 1 (got {batch_size})")
    if resume is None:
        if model is None:
            raise UserError("--model is required (or --resume RUN)")
        acfg = AutoDANConfig(population=population, generations=generations, elite_frac=elite_frac,
                             crossover_rate=crossover_rate, n_points=n_points,
                             word_swaps=word_swaps, max_prompt_tokens=max_prompt_tokens,
                             early_stop=early_stop, check_tokens=check_tokens, seed=seed,
                             name=name, developer=developer)
        from pathlib import Path

        texts_file = str(Path(texts).resolve()) if texts is not None else None
        sha = read_texts(texts_file)[1] if texts_file is not None else None
        cfg = AutoDANRunConfig(model=model, autodan=acfg.to_dict(), split=split, n=n, skip=skip,
                               prompt=prompt, target=target, adapter=adapter, n_eval=n_eval,
                               max_new_tokens=max_new_tokens, texts_file=texts_file,
                               texts_sha256=sha)
    else:
        from refusalscope.runs import Run

        cfg = AutoDANRunConfig.from_dict(Run.open(resume).manifest.config)

    def on_generation(row: dict) -> None:  # type: ignore[type-arg]
        check = f", {row['n_refused']} refused" if "n_refused" in row else ""
        typer.echo(f"generation {row['generation']}: best loss {row['best_loss']:.4f}, mean "
                   f"{row['mean_loss']:.4f} ({row['wall_s']:.1f} s{check})", err=True)

    run = run_autodan(cfg, options=RuntimeOptions(device=device, dtype=dtype),
                      batch_size=batch_size, resume=resume, on_generation=on_generation)
    from refusalscope.cli.attack_gcg import print_asr

    print_asr(run.file("result.json"))
    typer.echo(str(run.path))
