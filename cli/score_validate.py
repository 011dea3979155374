"""`refusalscope score validate RUN... --judge JUDGE`: agreement of our labels with a judge."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated, Any

import typer

from refusalscope.cli._common import DEVICE_HELP, DTYPE_HELP, console, out_option, user_errors

JUDGE_HELP = ("local:MODEL (registry name, folder, .gguf or hub id, run here) or "
              "openai:URL#MODEL for an OpenAI-compatible endpoint, e.g. "
              "openai:http://127.0.0.1:8000/v1#smollm2-135m (see `refusalscope serve`).")


def register(group: typer.Typer) -> None:
    """Add `validate` to the `score` group."""
    group.command("validate")(validate)


@user_errors
def validate(
    runs: Annotated[list[Path], typer.Argument(metavar="RUN", show_default=False,
                                               help="Generate run folders (or run ids).")],
    judge: str | None = typer.Option(None, "--judge", "-j", help=JUDGE_HELP),
    gold: Path | None = typer.Option(
        None, "--gold", help="Human labels file from `refusalscope label`: compare every "
                             "scorer of the runs with it instead of a judge (no --judge)."),
    rescore: bool = typer.Option(
        False, "--rescore", help="--gold: also label the labelled responses now, in memory, "
                                 "with the heuristic, the default classifier and the ensemble "
                                 "(the runs are not touched)."),
    rubric: str = typer.Option("refusal", help="refusal (one VERDICT line; compares our "
                               "refused) | harmbench (is the response an instance of the "
                               "behaviour? yes/no; compares our outcome complied) | "
                               "strongreject (StrongREJECT rubric: refused 0/1, convincing and "
                               "specific 1-5; compares refused, and complied vs a score >= "
                               "0.5) | on_task (does the response do what was asked? yes/no; "
                               "compares our outcome complied)."),
    sample: int = typer.Option(200, help="Responses to judge, stratified by model, attack "
                               "and prompt label (all if fewer)."),
    seed: int = typer.Option(0, help="Sampling seed."),
    api_key_env: str | None = typer.Option(
        None, help="openai judge: name of the environment variable holding the API key "
                   "(the key itself is never stored or printed)."),
    max_input_tokens: int = typer.Option(
        256, help="Request and response are each cut to this many judge tokens "
                  "(4x as many characters for an HTTP judge) before judging."),
    judge_max_new_tokens: int | None = typer.Option(
        None, help="Judge answer budget [default: 8 for refusal, 4 for harmbench and "
                   "on_task, 320 for strongreject]."),
    batch_size: int = typer.Option(8, help="local judge: prompts per batch."),
    timeout: float = typer.Option(60.0, help="openai judge: seconds per request."),
    retries: int = typer.Option(2, help="openai judge: retries on connection errors/5xx."),
    device: str = typer.Option("auto", help="local judge: " + DEVICE_HELP),
    dtype: str = typer.Option("auto", help="local judge: " + DTYPE_HELP),
    out: str | None = out_option("the `validate` run"),
) -> None:
    """Re-judge a stratified sample of scored responses with a stronger judge and report
    agreement, Cohen's kappa, the confusion matrix, disagreements and threshold suggestions.
    With --gold LABELS instead: every scorer of the runs against your labels.

    Writes a new `validate` run (judgements.jsonl, validation.json) under
    $REFUSALSCOPE_ARTIFACTS/runs (or --out) and prints a table. Unparsable judge
    answers are recorded and counted, never mapped to a label.

    \b
    Example:
      refusalscope score validate runs/base --judge local:qwen2.5-coder-1.5b --sample 50
    """
    from refusalscope.errors import UserError
    from refusalscope.runs import Run

    if (gold is None) == (judge is None):
        raise UserError("give --judge JUDGE or --gold LABELS (one of them)")
    if gold is not None:
        from refusalscope.cli.score_validate_gold import validate_gold

        with Run.at(out):
            validate_gold(runs, gold, rescore=rescore)
        return
    from refusalscope.models.handle import RuntimeOptions
    from refusalscope.scoring.judge import JudgeConfig, load_judge
    from refusalscope.scoring.validate import ValidateConfig, load_responses

    jcfg = JudgeConfig(spec=judge, rubric=rubric, max_new_tokens=judge_max_new_tokens,
                       max_input_tokens=max_input_tokens, api_key_env=api_key_env,
                       timeout_s=timeout, retries=retries)
    cfg = ValidateConfig(runs=tuple(str(r) for r in runs), judge=jcfg, sample=sample, seed=seed)
    for r in cfg.runs:  # bad runs fail before a judge model is loaded
        load_responses(r)
    judge_obj = load_judge(jcfg, options=RuntimeOptions(device=device, dtype=dtype),
                           batch_size=batch_size)
    with Run.at(out):
        result = _with_progress(cfg, judge_obj)
    _print(result)


def _with_progress(cfg: Any, judge_obj: Any) -> Any:
    from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn

    from refusalscope.scoring.validate import run_validate

    bar = Progress(TextColumn("judge"), BarColumn(), MofNCompleteColumn(), TimeElapsedColumn(),
                   transient=True, console=console())
    with bar:
        task = bar.add_task("judge", total=None)
        return run_validate(cfg, judge_obj, on_step=lambda k: bar.advance(task, k))


def _confusion(c: dict[str, int]) -> str:
    return ", ".join(f"{k.replace('ours_', '').replace('__judge_', '/')} {n}"
                     for k, n in c.items())


def _fmt(x: float | None) -> str:
    return "-" if x is None else f"{x:.3f}"


def _print(result: Any) -> None:
    from rich.table import Table

    v = result.validation
    out = console()
    table = Table(title=f"agreement with {v['judge']} ({v['rubric']} rubric)")
    for col in ("stratum (model/attack/label)", "judged", "agreement", "kappa"):
        table.add_column(col, no_wrap=col.startswith("stratum"))
    for name, s in v["by_stratum"].items():
        table.add_row(name, f"{s['n']}/{s['n_sampled']}", _fmt(s["agreement"]), _fmt(s["kappa"]))
    table.add_row("all", f"{v['n']}/{v['n_sampled']}", _fmt(v["agreement"]), _fmt(v["kappa"]))
    out.print(table)
    out.print(f"compared: {v.get('compared', 'refused')}; confusion (ours x judge): "
              f"{_confusion(v['confusion'])}; unparsable judge answers: {v['n_unparsable']}")
    if "compliance" in v:
        out.print(f"complied (ours: outcome) x judge (not refused, StrongREJECT score >= 0.5): "
                  f"agreement {_fmt(v['compliance']['agreement'])}, kappa "
                  f"{_fmt(v['compliance']['kappa'])}; {_confusion(v['compliance']['confusion'])}")
        means = ", ".join(f"{k} {b['mean']:.3f} (n={b['n']})"
                          for k, b in v["strongreject_by_outcome"].items())
        out.print(f"mean StrongREJECT score by our outcome: {means}")
    th = v.get("threshold") or {}
    if th.get("kind") == "p_refused":
        out.print(f"suggested p_refused threshold {_fmt(th['threshold'])}: agreement "
                  f"{_fmt(th['agreement'])} (at 0.5: {_fmt(th['agreement_at_0.5'])})")
    elif th.get("kind") == "phrases":
        out.print("phrase matches the judge calls compliance: "
                  f"{th['false_refusal_matches'] or 'none'}; "
                  f"judged refusals with no phrase match: {th['judge_refusals_without_match']}")
    yes, no = (("complied", "not complied") if v.get("compared", "refused") != "refused"
               else ("refused", "complied"))
    for d in v["disagreements"][:5]:
        out.print(f"  {d['id']}: ours={yes if d['ours'] else no} "
                  f"judge={yes if d['judge'] else no} | {d['response']}")
    out.print(f"wrote {result.run.path}")
