"""`refusalscope attack template`: jailbreak templates (DAN, in-the-wild, PyRIT) over requests."""

from __future__ import annotations

import typer

from refusalscope.cli._common import user_errors


def register(group: typer.Typer) -> None:
    """Add `template` to the `attack` group."""
    group.command("template")(template)


@user_errors
def template(
    model: str | None = typer.Option(None, "--model", "-m", help="Registry name, local folder or hub id (needed to evaluate)."),
    templates: str | None = typer.Option(None, "--templates", help="Comma list of template ids, families (dan, in-the-wild, pyrit, pyrit-in-the-wild, pyrit-pliny, pyrit-arth-singh, user), `default` or `all`. Default: `default` (`user` with --template-file)."),
    template_file: str | None = typer.Option(None, "--template-file", help="Your templates (.txt/.yaml/.json/.jsonl), each with one {{ prompt }} slot (family `user`)."),
    n_templates: int | None = typer.Option(None, "--n-templates", help="Templates sampled per family and seed (default: every selected one)."),
    seeds: str = typer.Option("0", "--seeds", help="Comma list of sampling seeds."),
    split: str = typer.Option("eval", help="Split the requests come from."),
    prompts: str | None = typer.Option(None, "--prompts", help="A prompt file instead of a split."),
    n: int = typer.Option(16, "--n", help="Number of requests (the first n)."),
    max_template_tokens: int | None = typer.Option(None, "--max-template-tokens", help="Leave out templates longer than this (model tokens; 0 = no cap). Default 600 with --model."),
    evaluate: bool | None = typer.Option(None, "--evaluate/--no-evaluate", help="Generate and score attacked and bare requests (default: on with --model)."),
    max_new_tokens: int = typer.Option(64, "--max-new-tokens", help="Evaluation response length."),
    classifier: str = typer.Option("minilm-outcome-v5", help="Classifier for the ensemble scorer beside the heuristic (skipped if absent; `none` to skip)."),
    batch_size: int = typer.Option(8, "--batch-size"),
    device: str = typer.Option("auto"),
    dtype: str = typer.Option("auto"),
    list_: bool = typer.Option(False, "--list", help="Show the template library (or the --templates selection) and exit."),
) -> None:
    """Apply jailbreak templates to requests; writes attacked_prompts.jsonl (and result.json with ASR vs baseline)."""
    from pathlib import Path

    from refusalscope.attacks.template_run import (DEFAULT_MAX_TEMPLATE_TOKENS,
                                                   TemplateRunConfig, run_template_attack)
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
    if max_template_tokens is None:
        max_template_tokens = DEFAULT_MAX_TEMPLATE_TOKENS if model else 0
    cfg = TemplateRunConfig(
        model=model, templates=templates or ("user" if template_file else "default"),
        template_file=template_file,
        template_file_sha256=sha256_file(Path(template_file))
        if template_file and Path(template_file).is_file() else None,  # else: a one-line error later
        split=split, prompts_file=prompts, n=n, n_templates=n_templates, seeds=seed_list,
        max_template_tokens=max_template_tokens,
        evaluate=bool(model) if evaluate is None else evaluate,
        max_new_tokens=max_new_tokens,
        classifier=None if classifier.lower() == "none" else classifier)

    def on_batch(k: int, tokens: int, seconds: float) -> None:
        typer.echo(f"generated {k} prompts, {tokens} tokens in {seconds:.1f} s", err=True)

    run = run_template_attack(cfg, options=RuntimeOptions(device=device, dtype=dtype),
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
