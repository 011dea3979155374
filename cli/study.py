"""`refusalscope study run|status|plan|report SPEC`: a declarative sweep as a resumable graph."""

from __future__ import annotations

import typer

from refusalscope.cli._common import console, user_errors

study_app = typer.Typer(
    no_args_is_help=True,
    rich_markup_mode=None,
    help="Run a study spec (TOML: models x attacks x seeds x eval x scorers) as a graph of runs "
         "that resumes where it stopped. SPEC is a .toml file or a shipped spec name "
         "(quickstart, seed-plan, defenses). Studies live under $REFUSALSCOPE_ARTIFACTS/studies."
         "\n\n\b\nExample:\n"
         "  refusalscope study plan quickstart && refusalscope study run quickstart",
)

_SPEC = typer.Argument(..., metavar="SPEC", help="A spec .toml file or a shipped spec name.")


def register(app: typer.Typer) -> None:
    app.add_typer(study_app, name="study")


def _load(spec: str):  # type: ignore[no-untyped-def]
    from refusalscope.study.executor import study_dir
    from refusalscope.study.graph import expand
    from refusalscope.study.spec import load_spec

    s = load_spec(spec)
    return s, expand(s), study_dir(s.name)


@study_app.command("run")
@user_errors
def run(
    spec: str = _SPEC,
    executor: str = typer.Option("local", help="local (in this process) | ray"),
    max_retries: int = typer.Option(2, "--max-retries", help="Retries per failed node."),
    address: str | None = typer.Option(None, help="--executor ray: cluster address "
                                                  "(default: RAY_ADDRESS, else a local cluster)."),
) -> None:
    """Run every node not done yet; finished nodes are skipped, interrupted ones resumed.
    Writes every node's run under the study folder named in the spec; prints progress and
    totals.

    \b
    Example:
      refusalscope study run quickstart
    """
    from refusalscope.errors import UserError
    from refusalscope.study.executor import run_local, study_lock, write_spec

    if executor not in ("local", "ray"):
        raise UserError(f"unknown --executor {executor!r}: local or ray")
    if max_retries < 0:
        raise UserError(f"--max-retries must be >= 0 (got {max_retries})")
    s, nodes, sdir = _load(spec)

    def show(node, rec) -> None:  # type: ignore[no-untyped-def]
        tag = "skipped (done)" if rec.get("skipped") else rec["status"]
        typer.echo(f"{node.id}  {node.label}: {tag}", err=True)

    with study_lock(sdir):
        write_spec(sdir, s.to_dict(), nodes)
        if executor == "ray":
            from refusalscope.study.ray_exec import run_ray

            out = run_ray(sdir, nodes, max_retries=max_retries, address=address, on_node=show)
        else:
            out = run_local(sdir, nodes, max_retries=max_retries, on_node=show)
    typer.echo(f"{sdir}: {len(out.done)} ran, {len(out.skipped)} already done, "
               f"{len(out.failed)} failed, {len(out.blocked)} blocked")
    for nid, err in out.failed.items():
        typer.echo(f"failed {nid}: {err}", err=True)
    if out.failed or out.blocked:
        raise typer.Exit(1)


@study_app.command("status")
@user_errors
def status(spec: str = _SPEC) -> None:
    """done / running / failed / pending per node, and totals. Prints a table; writes nothing.

    \b
    Example:
      refusalscope study status quickstart
    """
    from rich.table import Table

    from refusalscope.study.executor import last_error, node_state

    _, nodes, sdir = _load(spec)
    table = Table(title=f"study {sdir}")
    for col in ("node", "kind", "what", "state"):
        table.add_column(col, no_wrap=col == "node")
    counts: dict[str, int] = {}
    for n in nodes:
        st = node_state(sdir, n)
        counts[st] = counts.get(st, 0) + 1
        err = last_error(sdir, n) if st == "failed" else None
        table.add_row(n.id, n.kind, n.label, st + (f": {err[:80]}" if err else ""))
    out = console()
    out.print(table)
    out.print(", ".join(f"{counts.get(k, 0)} {k}" for k in ("done", "running", "failed",
                                                               "pending")))


@study_app.command("plan")
@user_errors
def plan(spec: str = _SPEC,
         rates: str | None = typer.Option(None, "--rates", help="A measured-rates JSON from "
                                          "`bash benchmarks/gpu_check.sh` (GPU); default: the "
                                          "shipped CPU rates (refusalscope/study/rates_cpu.json).")
         ) -> None:
    """What would run (nodes not done yet) and an estimate of its cost. First checks every
    cell that is not done (training pairs for its n_data, the model's weights against its
    device's memory, gated hub models without a token, defend-steer prompts held out from the
    sweep) and prints the problems per cell; then the plan. Writes nothing.

    \b
    Example:
      refusalscope study plan quickstart
    """
    from rich.table import Table

    from refusalscope.study import plan as cost
    from refusalscope.study.executor import node_state
    from refusalscope.study.feasible import check_nodes

    measured = cost.load_rates(rates)  # a bad file fails before the spec is expanded
    cpu = cost.load_rates()
    _, nodes, sdir = _load(spec)
    todo = [n for n in nodes if node_state(sdir, n) != "done"]
    _print_problems(check_nodes(todo))
    costs = cost.estimate(todo, rates=measured)
    dev_col = f"{measured.unit} min"
    table = Table(title=f"{len(todo)} of {len(nodes)} nodes to run ({sdir})")
    cols = ("node", "kind", "what", "GFLOPs", "CPU min") + ((dev_col,) if rates else ())
    for col in cols:
        table.add_column(col, justify="left" if col in ("node", "kind", "what") else "right",
                         no_wrap=col == "node")
    for c in costs:
        row = [c.node.id, c.node.kind, c.node.label,
               f"{c.flops / 1e9:,.0f}" if c.flops is not None else "?",
               f"{c.cpu_min:.1f}" if c.cpu_min is not None else "?"]
        if rates:
            row.append(f"{c.device_min:.2f}" if c.device_min is not None else "?")
        table.add_row(*row)
    t = cost.totals(costs)
    table.caption = (f"total {t['flops'] / 1e12:,.1f} TFLOPs: ~{t['cpu_min']:.0f} CPU minutes"
                     + (f", ~{t['device_min'] / 60:,.1f} {measured.unit}-hours on "
                        f"{measured.device}" if rates else "")
                     + (f"; {t['unknown']} nodes of unknown size" if t["unknown"] else "")
                     + ". FLOPs: the compute ledger's formulas (upper bound: every reply at "
                       "max_new_tokens). Rates measured by benchmarks/gpu_check.py, in ledger "
                       f"GFLOP/s: {_rate_line(cpu)} from {cpu.source}"
                     + (f"; {_rate_line(measured)} from {measured.source}" if rates else
                        "; for GPU-hours pass --rates FILE from `bash benchmarks/gpu_check.sh`")
                     + ". Plus model loading; see refusalscope/study/plan.py.")
    console().print(table)


def _print_problems(problems: list) -> None:  # type: ignore[type-arg]
    """Each distinct problem once, with the cells (node labels) it stops."""
    if not problems:
        typer.echo("feasibility: every cell can run here (pairs, memory, hub access checked)")
        return
    groups: dict[tuple[str, str], list[str]] = {}
    for p in problems:
        groups.setdefault((p.check, p.message), []).append(p.label or p.node)
    typer.echo(f"feasibility: {len(problems)} problems in {len({p.node for p in problems})} "
               "cells; fix them before `study run`:")
    for (check, msg), labels in groups.items():
        more = f" and {len(labels) - 3} more" if len(labels) > 3 else ""
        typer.echo(f"  [{check}] {msg}\n      cells: {'; '.join(labels[:3])}{more}")


def _rate_line(r) -> str:  # type: ignore[no-untyped-def]
    """'generate 52, train 89, ...' GFLOP/s at the largest measured shape."""
    big = max(r.shapes, key=lambda s: s["params_body"])
    parts = []
    for work in ("generate", "train", "gcg", "prefill"):
        rate = r.rate(work, big["params_body"], 1024)
        if rate is not None:
            parts.append(f"{work} {rate / 1e9:,.0f}")
    return f"{', '.join(parts)} ({r.device}, {big['shape']} shape)"


@study_app.command("report")
@user_errors
def report(
    spec: str = _SPEC,
    out: str | None = typer.Option(None, help="Report folder, new or empty "
                                              "(default: <study>/reports/<UTC time>)."),
    n_boot: int = typer.Option(1000, help="Bootstrap replicates for the fits."),
    c_axis: str | None = typer.Option(None, "--c-axis", help="Attack compute axis of the "
                                      "compute and joint fits and of the half-life figure: "
                                      "examples | steps | flops | pretrain-fraction "
                                      "[default: fits on flops and examples, the figure on "
                                      "flops; the half-life table has every axis]."),
    include_controls: bool = typer.Option(False, "--include-controls", help="Keep control "
                                          "models (which never refuse) in the size, joint and "
                                          "half-life fits."),
    n_kind: str = typer.Option("non-embedding", "--n-kind", help="Model size N in the fits: "
                               "non-embedding (without input embedding and LM head) | total "
                               "(the released count, tied embeddings once)."),
) -> None:
    """Write a report folder: report.md (findings, setup, results, fits, figures, attack
    half-life, caveats), results.csv, fit/, figures/ and half_life.csv|md|png. Never
    overwrites an earlier report.

    \b
    Example:
      refusalscope study report quickstart --n-boot 200
    """
    import datetime as dt
    from pathlib import Path

    from refusalscope.study.halflife import HalfLifeConfig
    from refusalscope.study.report import write_report

    HalfLifeConfig(c_axis=c_axis or "flops", n_boot=n_boot,
                   n_kind=n_kind)  # bad options fail before work
    s, nodes, sdir = _load(spec)
    stamp = dt.datetime.now(dt.UTC).strftime("%Y%m%dT%H%M%SZ")
    path = write_report(s, nodes, sdir, Path(out) if out else sdir / "reports" / stamp,
                        n_boot=n_boot, c_axis=c_axis, include_controls=include_controls,
                        n_kind=n_kind)
    typer.echo(str(path))
