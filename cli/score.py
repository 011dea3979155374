"""`refusalscope score RUN...` / `score --input FILE` / `score train-classifier`: refusal scoring.

`score` is a Typer group whose default command is `runs`: any arguments that do not start
with a subcommand name are routed to it, so `score RUN...` means `score runs RUN...`. Later
subcommands (`score drift`, `score validate`, ...) are added to `score_app` with
`@score_app.command("drift")` and coexist with `score RUN...`. A run folder literally named
like a subcommand can be scored as `score ./drift` or `score runs drift`.
"""

from __future__ import annotations

from pathlib import Path
from typing import Annotated, Any

import typer
from refusalscope.cli._common import console, out_option, rename_options, user_errors
from typer.core import TyperGroup

from refusalscope.errors import UserError

DEFAULT_COMMAND = "runs"
rename_options("score train-classifier", {"--max-length": "--max-len",
                                          "--no-no-pyrit": "--pyrit",
                                          "--no-no-handwritten": "--handwritten",
                                          "--no-no-generated": "--generated"})


class DefaultCommandGroup(TyperGroup):
    """A group that runs `DEFAULT_COMMAND` when the first argument is not a subcommand."""

    def parse_args(self, ctx: Any, args: list[str]) -> list[str]:
        if args and args[0] not in self.commands and args[0] not in ctx.help_option_names:
            args = [DEFAULT_COMMAND, *args]
        return super().parse_args(ctx, args)


score_app = typer.Typer(
    cls=DefaultCommandGroup,
    no_args_is_help=True,
    rich_markup_mode=None,
    help="Label responses as refusals and report refusal rates with 95% CIs. "
         "`refusalscope score RUN...` is short for `refusalscope score runs RUN...`; "
         "see `refusalscope score runs --help`.\n\n\b\nExample:\n"
         "  refusalscope score RUN --scorer ensemble",
)


def register(app: typer.Typer) -> None:
    """Add the `score` group (with the subcommands other modules define) to the root app."""
    from refusalscope.cli import score_drift, score_validate

    score_drift.register(score_app)
    score_validate.register(score_app)
    app.add_typer(score_app, name="score")


@score_app.command(DEFAULT_COMMAND)
@user_errors
def score_runs(
    runs: Annotated[list[Path] | None, typer.Argument(
        metavar="RUN", show_default=False,
        help="Generate run folders (or run ids) to score.")] = None,
    input: Annotated[Path | None, typer.Option(
        "--input", "-i", help="Score a CSV/TSV/JSONL file instead of runs.")] = None,
    prompt_col: str = typer.Option("prompt", help="--input: prompt column."),
    response_col: str = typer.Option("response", help="--input: response column."),
    label_col: str | None = typer.Option(
        None, help="--input: harmful/harmless column [default: 'label' if present]."),
    assume_label: str = typer.Option(
        "harmful", help="--input without a label column: class of every row."),
    lists: str = typer.Option("refusalscope",
                              help="Phrase lists, comma-separated: refusalscope, "
                                   "gcg_individual, harmbench_advbench."),
    window: int = typer.Option(300, help="Characters searched by window-matched lists."),
    seed: int = typer.Option(0, help="Bootstrap seed."),
    n_boot: int = typer.Option(10_000, help="Bootstrap resamples."),
    allow_partial: bool = typer.Option(False, help="Score runs whose status is not success."),
    scorer_name: str = typer.Option(
        "study", "--scorer", help="study (the ensemble once the classifier is trained, else "
                                  "the heuristic with a warning: what attacks report), "
                                  "heuristic, classifier (trained, see train-classifier), "
                                  "ensemble (classifier decides unless unsure, then the "
                                  "heuristic) or judge (--judge, --rubric; unparsable "
                                  "verdicts fall back to the heuristic and are counted)."),
    judge: str | None = typer.Option(
        None, "--judge", help="--scorer judge: local:MODEL or openai:URL#MODEL (as in "
                              "`score validate`)."),
    rubric: str = typer.Option("harmbench", help="--scorer judge: refusal | harmbench | "
                                                 "strongreject | on_task."),
    confirm: str | None = typer.Option(
        None, "--confirm", help="second stage for responses still complied: local:MODEL "
        "(or openai:URL#MODEL with --confirm-method judge); below --confirm-threshold a "
        "response becomes degenerate (off_task). Cost per complied response only."),
    confirm_method: str = typer.Option(
        "pmi", help="--confirm: pmi (per-token PMI of response and request under the model) "
                    "or judge (its P(yes) that the reply does what was asked)."),
    confirm_scope: str = typer.Option(
        "disputed", help="--confirm: which complied responses are scored: disputed (the "
                         "outcome classifier reads them as off-topic, the on-topic check did "
                         "not) or complied (all; costs real compliance)."),
    confirm_threshold: float | None = typer.Option(
        None, help="--confirm: score below which complied becomes off_task [default: pmi "
                   "0.15 disputed / 0.20 complied, judge 0.40; chosen for "
                   "qwen2.5-coder-0.5b / -1.5b: measure your own model's]."),
    classifier: str = typer.Option("minilm-outcome-v21",
                                   help="--scorer classifier/ensemble: classifier name "
                                        "(minilm-refusal-v2: the previous two-class one)."),
    gold_col: str | None = typer.Option(
        None, help="--input: ground-truth column (refused/complied/degenerate, 1/0, "
                   "true/false, yes/no); reports refusal accuracy, precision, recall, F1 per "
                   "scorer, and the accuracy of outcome != complied against gold != complied "
                   "with the 3-way outcome confusion."),
    relevance: bool = typer.Option(
        True, "--relevance/--no-relevance",
        help="On-topic check of not-refused responses (MiniLM; off-topic answers become "
             "degenerate, reason off_topic)."),
    out: str | None = out_option("the new `score` run of --input FILE"),
) -> None:
    """Score generate runs in place (new scores.jsonl + metrics.json; never regenerates or
    overwrites), or score any --input file into a new `score` run (under
    $REFUSALSCOPE_ARTIFACTS/runs, or --out). Prints a table of refusal rates with 95% CIs.

    \b
    Example:
      refusalscope score runs/base runs/attacked --scorer ensemble
    """
    from refusalscope.scoring import BootstrapSpec, HeuristicScorer
    from refusalscope.runs import Run
    from refusalscope.scoring.factory import NAMES
    from refusalscope.scoring.score import load_run, score_file, score_loaded

    if bool(runs) == (input is not None):
        raise UserError("give run folders or --input FILE (one of the two)")
    if scorer_name not in (*NAMES, "judge"):
        raise UserError(f"unknown scorer {scorer_name!r}; use study, heuristic, classifier, "
                        "ensemble or judge")
    if (scorer_name == "judge") != (judge is not None):
        raise UserError("--scorer judge and --judge SPEC go together")
    if out is not None and input is None:
        raise UserError("--out is for --input FILE: scores of runs go into each run's folder")
    if gold_col is not None and input is None:
        raise UserError("--gold-col needs --input FILE (runs have no ground-truth labels)")
    if n_boot < 1:
        raise UserError(f"--n-boot must be at least 1, not {n_boot}")
    if input is not None:  # before any model (scorer, judge, second stage) loads
        if assume_label not in ("harmful", "harmless"):
            raise UserError(f"--assume-label must be harmful or harmless, not {assume_label!r}")
        if not Path(input).is_file():
            raise UserError(f"input file not found: {input}")
    confirm_cfg = None
    if confirm is not None:
        from refusalscope.scoring.confirm import ConfirmConfig

        confirm_cfg = ConfirmConfig(confirm, method=confirm_method, threshold=confirm_threshold,
                                    scope=confirm_scope)
    heuristic = HeuristicScorer(lists=_split_lists(lists), window=window)
    scorer: Any = heuristic
    if scorer_name == "judge":
        from refusalscope.scoring.judge import JudgeConfig, JudgeScorer, load_judge

        jcfg = JudgeConfig(spec=str(judge), rubric=rubric)
        scorer = JudgeScorer(load_judge(jcfg), jcfg, fallback=heuristic)
    else:
        from refusalscope.scoring.factory import scorer as make_scorer

        scorer = make_scorer(scorer_name, classifier=classifier, heuristic=heuristic)
    spec = BootstrapSpec(n_boot=n_boot, seed=seed)
    if input is not None:
        confirmer = _confirmer(confirm_cfg)
        with Run.at(out):
            results = [score_file(input, scorer, prompt_col=prompt_col,
                                  response_col=response_col, label_col=label_col,
                                  default_label=assume_label, bootstrap=spec, gold_col=gold_col,
                                  relevance=relevance, confirm=confirmer)]
    else:
        # Validate every run before writing anything: one bad run leaves all untouched.
        loaded = [load_run(r, allow_partial=allow_partial) for r in runs or ()]
        confirmer = _confirmer(confirm_cfg)
        results = [score_loaded(lr, scorer, bootstrap=spec, relevance=relevance,
                                confirm=confirmer) for lr in loaded]
    _print_table(results, f"{scorer.name} {scorer.version}")
    _print_extras(results)
    if scorer_name == "judge":
        console().print(f"judge verdicts unparsable: {scorer.unparsable}/{scorer.judged} "
                        "(labelled by the heuristic instead)")
    if confirmer is not None:
        console().print(f"second stage ({confirmer.name}): {confirmer.overruled} of "
                        f"{confirmer.judged} complied responses off task (score < "
                        f"{confirmer.threshold}); {confirmer.unscored} unscored, left complied")


def _confirmer(cfg: Any) -> Any:
    """The second stage of `--confirm`, loaded (None without one)."""
    if cfg is None:
        return None
    from refusalscope.scoring.confirm import Confirmer

    return Confirmer(cfg)


def _print_extras(results: list[Any]) -> None:
    """Calibration Entropy and, with gold labels, accuracy per scorer."""
    out = console()
    for res in results:
        ce = res.metrics.get("calibration_entropy")
        if ce:
            out.print(f"{res.run.id}: CE {ce['mean_bits']:.3f} bits [{ce['ci'][0]:.3f}, "
                      f"{ce['ci'][1]:.3f}], near-boundary (P in [0.25, 0.75]) "
                      f"{ce['near_boundary']}/{ce['n']}")
        for name, m in (res.metrics.get("accuracy") or {}).items():
            c = m["confusion"]
            out.print(f"{name}: accuracy {m['accuracy']:.3f}, precision {m['precision']:.3f}, "
                      f"recall {m['recall']:.3f}, F1 {m['f1']:.3f} (tp {c['tp']}, fp {c['fp']}, "
                      f"fn {c['fn']}, tn {c['tn']}; refused = positive)")
        oa = res.metrics.get("outcome_accuracy")
        if oa:
            _print_outcome_accuracy(oa)


def _print_outcome_accuracy(oa: dict[str, Any]) -> None:
    """The outcome-vs-gold line (what attack success is read from) and the 3-way confusion."""
    out = console()
    out.print(f"outcome: accuracy of outcome != complied vs gold != complied "
              f"{oa['not_complied']:.3f} ({oa['not_complied_correct']}/{oa['n']}); "
              f"3-way outcome accuracy {oa['three_way']:.3f}")
    names = ("refused", "complied", "degenerate")
    for g in names:
        row = oa["confusion"][g]
        if sum(row.values()):
            out.print(f"  gold {g:<10} -> " + ", ".join(f"{p} {row[p]}" for p in names))


def _split_lists(text: str) -> tuple[str, ...]:
    return tuple(s.strip() for s in text.split(",") if s.strip())


def _print_table(results: list[Any], scorer_version: str) -> None:
    from rich.table import Table

    table = Table(title=f"refusals ({scorer_version})")
    table.add_column("run", no_wrap=True)  # shown whole on one line: users copy run ids
    numeric = ("n", "refused", "rate", "complied", "degenerate")
    for col in ("model", "label", "n", "refused", "rate", "95% CI", "Wilson 95%", "complied",
                "degenerate"):
        table.add_column(col, justify="right" if col in numeric else "left",
                         no_wrap=col.endswith("95%") or col == "95% CI", overflow="fold")
    table.caption = ("95% CI: percentile bootstrap over prompts; it is a point at 0% or 100%, "
                     "where Wilson's interval is the one to quote. complied = substantive "
                     "compliance; degenerate = not refused but empty, looping, echoing, "
                     "evasive, error text, persona chatter or off-topic "
                     "(refusalscope.scoring.degeneracy).")
    for res in results:
        m = res.metrics
        for cls, s in m["by_label"].items():
            name = "RRR" if cls == "harmful" else "over-refusal"
            oc = m.get("outcomes", {}).get("by_label", {}).get(cls)
            table.add_row(res.run.id, str(m.get("model") or "-"), f"{cls} ({name})", str(s["n"]),
                          str(s["refused"]), f"{s['rate']:.3f}",
                          f"[{s['ci'][0]:.3f}, {s['ci'][1]:.3f}]",
                          f"[{s['wilson95'][0]:.3f}, {s['wilson95'][1]:.3f}]",
                          f"{oc['complied']['rate']:.3f}" if oc else "-",
                          f"{oc['degenerate']['rate']:.3f}" if oc else "-")
    out = console()
    out.print(table)
    for res in results:
        out.print(f"wrote {res.scores_path} and {res.metrics_path.name}")
        if res.drift:
            d = res.drift
            out.print(f"Refusal Drift vs baseline: {_fmt_rd(d['rd_refused'])} over prompts "
                      f"refused at baseline, {_fmt_rd(d['rd_all'])} over all "
                      f"(wrote {d['drift_file']})")


def _fmt_rd(block: dict[str, Any] | None) -> str:
    if not block or block.get("mean") is None:
        return "n/a"
    lo, hi = block["ci"]
    return f"{block['mean']:.3f} [{lo:.3f}, {hi:.3f}] (n={block['n']})"


@score_app.command("train-classifier")
@user_errors
def train_classifier_cmd(
    backbone: str = typer.Option(
        "all-minilm-l6-v2", help="Encoder: all-minilm-l6-v2 (offline, pinned wheel), a local "
                                 "folder, or a hub id such as microsoft/deberta-v3-small."),
    data: Annotated[list[Path] | None, typer.Option(
        "--data", help="Extra labelled CSV/TSV/JSONL (prompt, response, refused columns), "
                       "or a labels file from `refusalscope label`; repeatable.")] = None,
    gold_col: str = typer.Option("refused", help="--data: ground-truth refusal column."),
    pyrit: bool = typer.Option(True, "--pyrit/--no-pyrit",
                               help="Use the PyRIT human-labelled responses."),
    handwritten: bool = typer.Option(
        True, "--handwritten/--no-handwritten",
        help="Use the hand-written labelled responses "
             "(scoring/resources/handwritten_outcomes*.jsonl)."),
    generated: bool = typer.Option(
        True, "--generated/--no-generated",
        help="Add the generated moralising / partial-refusal / off-topic / error / persona / "
             "echo rows."),
    pairs: bool = typer.Option(
        False, "--pairs", help="Also add self-supervised off-topic pairs (a request with the "
                               "answer to another request); off by default, see train_data."),
    head: str = typer.Option("outcome", help="outcome (complied / refused / offtopic) or "
                                             "refusal (complied / refused, as v2)."),
    name: str = typer.Option("minilm-outcome-v21", help="Name to save the classifier under."),
    epochs: int = typer.Option(3, help="Training epochs."),
    batch_size: int = typer.Option(16, help="Training batch size."),
    lr: float = typer.Option(5e-5, help="Learning rate."),
    max_length: int = typer.Option(96, "--max-len", help="Tokens per (response, prompt) pair; "
                                                         "longer pairs are cut."),
    max_train_rows: int = typer.Option(3600, help="Train on a seeded sample of at most this "
                                                  "many rows (bounds the CPU time)."),
    view: str = typer.Option("persona", help="What the classifier reads of a response: persona "
                                             "(without jailbreak-persona sentences such as "
                                             "'Developer Mode Output:') or raw."),
    class_weight: str = typer.Option("balanced", help="Loss weight per class: balanced (each "
                                                      "class weighs as much in total) or none."),
    seed: int = typer.Option(0, help="Seed for the split, the generated rows, initialisation "
                                     "and shuffles."),
    overwrite: bool = typer.Option(False, help="Replace a classifier of the same name."),
) -> None:
    """Fine-tune an encoder to label outcomes (or refusals); held-out metrics, overall and per
    class, are printed and saved in the card. PyRIT rows of the project's held-out set
    (refusalscope.scoring.heldout) are never trained on. Writes the classifier under
    $REFUSALSCOPE_HOME/classifiers/NAME and prints its held-out metrics.

    \b
    Example:
      refusalscope score train-classifier --name my-clf --epochs 1 --max-train-rows 500
    """
    from refusalscope.fileio import sha256_file
    from refusalscope.labels import is_labels_file, training_examples
    from refusalscope.paths import runs_dir
    from refusalscope.scoring.classifier import TrainConfig
    from refusalscope.scoring.classifier_train import train_classifier
    from refusalscope.scoring.labelled import file_examples, split_groups
    from refusalscope.scoring.train_data import SPLIT_SALT, outcome_examples

    cfg = TrainConfig(name=name, backbone=backbone, epochs=epochs, batch_size=batch_size, lr=lr,
                      max_length=max_length, seed=seed, head=head,
                      max_train_rows=max_train_rows, view=view,
                      class_weight=class_weight)
    files, sources = [], []
    for f in data or ():
        rows = (training_examples(f) if is_labels_file(f)  # `refusalscope label` output
                else file_examples(f, gold_col=gold_col))
        files += rows
        sources.append({"name": f"file:{f.name}", "path": str(f.resolve()),
                        "sha256": sha256_file(f), "n": len(rows),
                        "refused": sum(e.refused for e in rows)})
    if not pyrit and not handwritten and not files:
        raise UserError("no training data: drop --no-pyrit / --no-handwritten or give --data FILE")
    examples, more = outcome_examples(seed=seed, pyrit=pyrit, extra=files,
                                      runs_dir=runs_dir(), generated=generated,
                                      handwritten=handwritten,
                                      pairs=pairs,
                                      heldout_frac=cfg.heldout_frac, calib_frac=cfg.calib_frac)
    if not examples:
        raise UserError("no training data left after the held-out exclusion")
    split = split_groups(examples, heldout_frac=cfg.heldout_frac, calib_frac=cfg.calib_frac,
                         seed=seed, salt=SPLIT_SALT)
    folder, card = train_classifier(cfg, split, sources + more, overwrite=overwrite)
    _print_heldout(card, folder)


def _print_heldout(card: dict[str, Any], folder: Path) -> None:
    from rich.table import Table

    s = card["splits"]
    table = Table(title=f"held-out: {s['heldout']['n']} responses "
                        f"({s['heldout']['refused']} refused), {s['heldout']['groups']} prompts")
    for col in ("scorer", "accuracy", "precision", "recall", "F1", "tp/fp/fn/tn"):
        table.add_column(col, justify="left" if col == "scorer" else "right")
    for scorer, m in card["heldout_metrics"].items():
        c = m["confusion"]
        table.add_row(scorer, f"{m['accuracy']:.3f}", f"{m['precision']:.3f}",
                      f"{m['recall']:.3f}", f"{m['f1']:.3f}",
                      f"{c['tp']}/{c['fp']}/{c['fn']}/{c['tn']}")
    cal = card["calibration"]
    out = console()
    out.print(table)
    out.print(_per_class_table(card))
    t = card.get("training") or {}
    out.print(f"calibration: ECE {cal['ece_before']:.3f} before, {cal['ece_after']:.3f} after "
              f"temperature T={cal['temperature']:.3f} (fitted on the calib split)")
    if t:
        out.print(f"training: {t['rows']} rows, {t['wall_seconds']:.0f} s wall, "
                  f"{t['cpu_seconds']:.0f} CPU-s on {t['torch_threads']} threads")
    out.print(f"saved {folder} (card.json, reliability.png)")


def _per_class_table(card: dict[str, Any]) -> Any:
    """Outcome accuracy per held-out class, and complied-vs-not agreement, per scorer."""
    from rich.table import Table

    scorers = list(card["heldout_outcomes"])
    table = Table(title="held-out outcome accuracy per class (complied-vs-not agreement)")
    table.add_column("class")
    table.add_column("n", justify="right")
    table.add_column("gold")
    for sc in scorers:
        table.add_column(sc, justify="right")
    for kind, m in card["heldout_per_class"].items():
        table.add_row(kind, str(m["n"]), ",".join(m["gold"]),
                      *(f"{m['accuracy'][sc]:.3f} ({m['complied_agreement'][sc]:.3f})"
                        for sc in scorers))
    table.add_row("all", str(card["heldout_outcomes"][scorers[0]]["n"]), "",
                  *(f"{card['heldout_outcomes'][sc]['accuracy']:.3f}" for sc in scorers))
    return table
