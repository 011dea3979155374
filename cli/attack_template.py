"""`refusalscope attack template`: jailbreak templates (DAN, in-the-wild, PyRIT) over requests."""

from __future__ import annotations

import typer

from refusalscope.attacks.base import config_defaults
from refusalscope.attacks.evaluate import REQUEST_DEFAULTS as R
from refusalscope.attacks.template_run import TemplateConfig
from refusalscope.cli._common import out_option, user_errors

T = config_defaults(TemplateConfig)


def register(group: typer.Typer) -> None:
    """Add `template` to the `attack` group."""
    group.command("template")(template)


@user_errors
def template(
    model: str | None = typer.Option(None, "--model", "-m", metavar="MODEL", help="Registry name, local folder or hub id (needed to evaluate)."),
    templates: str | None = typer.Option(None, "--templates", metavar="IDS", help="Comma list of template ids, families (dan, in-the-wild, pyrit, pyrit-in-the-wild, pyrit-pliny, pyrit-arth-singh, user), `default` or `all`. Default: `default` (`user` with --template-file)."),
    template_file: str | None = typer.Option(None, "--template-file", metavar="FILE", help="Your templates (.txt/.yaml/.json/.jsonl), each with one {{ prompt }} slot (family `user`)."),
    n_templates: int | None = typer.Option(T["n_templates"], "--n-templates", metavar="N", help="Templates sampled per family and seed (default: every selected one)."),
    seeds: str = typer.Option(",".join(map(str, T["seeds"])), "--seeds", metavar="N,N,...", help="Comma list of sampling seeds."),
    split: str = typer.Option("eval", metavar="SPLIT", help="Split the requests come from."),
    prompts: str | None = typer.Option(None, "--prompts", metavar="FILE", help="A prompt file instead of a split."),
    n: int = typer.Option(16, "--n", metavar="N", help="Number of requests (the first n)."),
    max_template_tokens: int | None = typer.Option(None, "--max-template-tokens", metavar="TOKENS", help=f"Leave out templates longer than this (model tokens; 0 = no cap). Default {T['max_template_tokens']} with --model."),
    evaluate: bool | None = typer.Option(None, "--evaluate/--no-evaluate", help="Generate and score attacked and bare requests (default: on with --model)."),
    max_new_tokens: int = typer.Option(R["max_new_tokens"], "--max-new-tokens", metavar="TOKENS", help="Evaluation response length."),
    classifier: str = typer.Option("minilm-outcome-v21", metavar="NAME", help="Classifier for the ensemble scorer beside the heuristic (skipped if absent; `none` to skip)."),
    batch_size: int = typer.Option(8, "--batch-size", metavar="N", help="Prompts per generation batch."),
    device: str = typer.Option("auto", metavar="DEVICE", help="auto | cpu | cuda | cuda:N"),
    dtype: str = typer.Option("auto", metavar="DTYPE", help="auto (bf16 on GPU, fp32 on CPU) | float32 | bfloat16"),
    out: str | None = out_option(),
    list_: bool = typer.Option(False, "--list", help="Show the template library (or the --templates selection) and exit."),
) -> None:
    """Apply jailbreak templates to requests.

    Writes a run folder (--out, default: a new one under $REFUSALSCOPE_ARTIFACTS/runs):
    templates.json, attacked_prompts.jsonl and, evaluated, eval.jsonl and result.json (ASR
    vs baseline with CIs, per family and template); prints the ASR table and the run folder.

    \b
    Example:
      refusalscope attack template -m smollm2-135m --templates dan --n-templates 2 --n 8
    """
    from pathlib import Path

    from refusalscope.attacks.runner import RunConfig, run_attack
    from refusalscope.attacks.template_run import TemplateConfig
    from refusalscope.errors import UserError
    from refusalscope.fileio import sha256_file
    from refusalscope.models.handle import RuntimeOptions

    if list_:
        _list(templates, template_file)
        return
    try:
        seed_list = tuple(int(s) for s in seeds.split(",") if s.strip())
    except ValueError:
        raise UserError(f"--seeds must be a comma list of integers (got {seeds!r})") from None
    if model is None and (evaluate or max_template_tokens):
        raise UserError("--evaluate and --max-template-tokens need --model")
    if max_template_tokens is None:
        max_template_tokens = T["max_template_tokens"] if model else 0
    tcfg = TemplateConfig(
        templates=templates or ("user" if template_file else "default"),
        template_file=template_file,
        template_file_sha256=sha256_file(Path(template_file))
        if template_file and Path(template_file).is_file() else None,  # else: a one-line error later
        n_templates=n_templates, seeds=seed_list, max_template_tokens=max_template_tokens)
    if batch_size < 1:
        raise UserError(f"--batch-size must be at least 1 (got {batch_size})")
    cfg = RunConfig("template", model, tcfg.to_dict(), mode="universal", split=split,
                    prompts_file=prompts, n=n,
                    evaluate=bool(model) if evaluate is None else evaluate,
                    max_new_tokens=max_new_tokens, classifier=classifier.lower()
                    if classifier.lower() == "none" else classifier)

    def on_batch(k: int, tokens: int, seconds: float) -> None:
        typer.echo(f"generated {k} prompts, {tokens} tokens in {seconds:.1f} s", err=True)

    from refusalscope.runs import Run

    with Run.at(out):
        run = run_attack(cfg, options=RuntimeOptions(device=device, dtype=dtype),
                         batch_size=batch_size, on_batch=on_batch)
    if cfg.evaluate:
        _summary(run.file("result.json"))
    typer.echo(str(run.path))


def _pct(s: dict) -> str:  # type: ignore[type-arg]
    return f"{s['asr']:.1%} [{s['ci'][0]:.1%}, {s['ci'][1]:.1%}] (n={s['n']})"


def _pct_nr(s: dict) -> str:  # type: ignore[type-arg]
    nr = s["not_refused"]
    return f"{nr['rate']:.1%} [{nr['ci'][0]:.1%}, {nr['ci'][1]:.1%}]"


def _summary(path) -> None:  # type: ignore[no-untyped-def]
    import json

    result = json.loads(path.read_text())
    main = result["main_scorer"]
    asr = result["asr"][main]
    typer.echo(f"ASR = share complied (substantive: not refused, not an echo, loop, error, "
               f"persona chatter or off-topic) by the {main} scorer; not refused beside it; "
               "95% bootstrap CIs:")
    for name, s in (("baseline", asr["baseline"]), ("attacked", asr["attacked"]),
                    ("any template", asr["any_template"]), *asr["by_family"].items()):
        typer.echo(f"  {name:<13} ASR {_pct(s)}; not refused {_pct_nr(s)}")


def _list(spec: str | None, template_file: str | None) -> None:
    from refusalscope.attacks.templates import (default_ids, families, library,
                                                load_template_file, select)

    pool = list(library())
    if template_file:
        pool += load_template_file(template_file)
    if spec is None and not template_file:
        typer.echo("family             templates")
        for fam, k in families(pool).items():
            typer.echo(f"{fam:<18} {k}")
        typer.echo(f"default: {', '.join(default_ids(pool))}")
        typer.echo("--list --templates FAMILY|IDS|all shows ids")
        return
    for t in select(spec or "user", pool):
        typer.echo(f"{t.id}\t{t.family}\t{t.slot}\t{len(t.text)} chars\t{t.name}")
