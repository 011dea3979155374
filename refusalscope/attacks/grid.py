"""Sweeps of LoRA attacks: comma lists expand to a grid of configs, one run folder per cell.

Cells that differ only in `steps` share one training trajectory (constant learning rate, batches
fixed by seed and step), so the grid trains the longest of them once and writes each shorter
cell's run when the trajectory passes its step count: a 1/4/16/64 axis costs 64 steps, not 85.

A cell's run folder name ends with the content id of its config (`runs.config_id`), so the grid
finds earlier work by name: a cell with a finished (`success`) run is skipped, and a cell with an
unfinished run is resumed in that folder from its last checkpoint.
"""

from __future__ import annotations

import itertools
import logging
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, replace
from pathlib import Path
from typing import TYPE_CHECKING, Any, TypeVar

from refusalscope.attacks.lora import COMMAND, COMPUTE, LoraAttackConfig
from refusalscope.errors import UserError

if TYPE_CHECKING:
    from refusalscope.models.handle import ModelHandle

log = logging.getLogger(__name__)

T = TypeVar("T")
# Log-spaced: refusal collapses within the first few dozen steps of a small model.
DEFAULT_STEPS = "1,2,4,8,16,32"
DEFAULT_N_DATA = "16,64"
GRID_FIELDS = ("n_data", "steps", "lr", "rank", "alpha", "seed")  # outer -> inner loop order


def parse_values(text: str | int | float, cast: Callable[[str], T], option: str) -> list[T]:
    """`"1,2,4"` -> `[1, 2, 4]`; order kept, duplicates dropped; bad items -> `UserError`."""
    out: list[T] = []
    for item in str(text).split(","):
        item = item.strip()
        try:
            value = cast(item)
        except ValueError:
            raise UserError(f"{option}: {item!r} is not a {cast.__name__} "
                            "(give one value or a comma list, e.g. 1,2,4)") from None
        if value not in out:
            out.append(value)
    return out


def expand_grid(model: str, grid: dict[str, Sequence[Any]], **fixed: Any) -> list[LoraAttackConfig]:
    """One config per combination of the `grid` values, in `GRID_FIELDS` order (last varies
    fastest); `fixed` holds the other config fields.

    Example:
        >>> [(c.n_data, c.steps) for c in expand_grid("m", {"n_data": [8, 16], "steps": [1, 2]})]
        [(8, 1), (8, 2), (16, 1), (16, 2)]
    """
    unknown = set(grid) - set(GRID_FIELDS)
    if unknown:
        raise ValueError(f"not grid fields: {sorted(unknown)}")
    keys = [k for k in GRID_FIELDS if k in grid]
    return [LoraAttackConfig(model=model, **fixed, **dict(zip(keys, combo, strict=True)))
            for combo in itertools.product(*(grid[k] for k in keys))]


def find_run(cfg: LoraAttackConfig, root: Path | None = None) -> Any:
    """The latest run of exactly this config (by the config id in folder names) in `root`
    (default: `paths.runs_dir()`), or None."""
    from refusalscope.paths import runs_dir
    from refusalscope.runs import Run, config_id

    root = root or runs_dir()
    if not root.is_dir():
        return None
    want = cfg.to_dict()
    for path in sorted(root.glob(f"*_{COMMAND}_*_{config_id(want)}"), reverse=True):
        try:
            run = Run.open(path)
        except UserError:
            continue
        if run.manifest.command == COMMAND and run.manifest.config == want:
            return run
    return None


@dataclass(frozen=True)
class CellResult:
    config: LoraAttackConfig
    run_path: str
    skipped: bool  # a finished run of this config already existed
    compute: dict[str, Any]


def run_grid(cfgs: Sequence[LoraAttackConfig], *, options: Any = None,
             on_cell: Callable[[int, int, LoraAttackConfig], None] | None = None,
             on_step: Callable[[int, int, float], None] | None = None,
             on_memory: Callable[[Any], None] | None = None,
             root: Path | None = None) -> list[CellResult]:
    """Train every cell not finished yet, on one loaded model; returns one result per cell.
    `on_memory(plan)` gets each trained cell's memory estimate (`lora.memory_plan`). `root`: the
    folder that holds the cells' run folders (default `paths.runs_dir()`); finished cells found
    there are skipped.

    All bad input (data sizes, target modules) fails before the first run folder is made.
    """
    from refusalscope.attacks.pairs import load_pairs
    from refusalscope.models.handle import ModelHandle
    from refusalscope.runs import Run

    if len({c.model for c in cfgs}) != 1:
        raise UserError("a grid trains one model: give one --model")
    data = {c: load_pairs(c.n_data, seed=c.seed, target_kind=c.target_kind,
                          data_file=c.data_file) for c in cfgs}
    existing = {c: find_run(c, root) for c in cfgs}
    results: dict[LoraAttackConfig, CellResult] = {}
    for c, run in existing.items():
        if run is not None and run.manifest.status == "success":
            results[c] = CellResult(c, str(run.path), True, run.manifest.extra.get("compute", {}))
    todo = [c for c in cfgs if c not in results]
    if todo:
        from refusalscope.attacks.lora import target_modules_for

        handle = ModelHandle.load(cfgs[0].model, options=options)
        for c in todo:
            target_modules_for(handle.model, c)
        groups: dict[LoraAttackConfig, list[LoraAttackConfig]] = {}
        for c in todo:
            groups.setdefault(replace(c, steps=1), []).append(c)
        done = 0
        for cells in groups.values():
            cells.sort(key=lambda c: c.steps)
            longest, shorter = cells[-1], {c.steps: c for c in cells[:-1]}
            runs = {c: existing[c] or Run.create(COMMAND, c.to_dict(), model=c.model,
                                                 seed=c.seed, harmful_content=True, root=root)
                    for c in cells}
            done += 1
            if on_cell is not None:
                on_cell(done, len(groups), longest)

            def snapshot(step: int, model: Any, compute: Any, shorter=shorter, runs=runs,
                         longest=longest) -> None:
                c = shorter.get(step)
                if c is None:
                    return
                write_snapshot(runs[c], runs[longest], model, compute, handle, data[c])
                results[c] = CellResult(c, str(runs[c].path), False,
                                        runs[c].manifest.extra["compute"])

            compute = run_cell(handle, data[longest], longest, runs[longest], on_step=on_step,
                               snapshot=snapshot if shorter else None, on_memory=on_memory)
            results[longest] = CellResult(longest, str(runs[longest].path), False, compute)
            for c in cells:  # resumed past its step count: not on the trajectory this time
                if c not in results:
                    results[c] = CellResult(c, str(runs[c].path), False,
                                            run_cell(handle, data[c], c, runs[c], on_step=on_step,
                                                     on_memory=on_memory))
    return [results[c] for c in cfgs]


def start_cell(run: Any, handle: ModelHandle, pairs: list[Any]) -> None:
    """Mark `run` started and record the pairs, model and device it trains with."""
    from refusalscope.models.registry import size_fields

    run.manifest.status = "started"
    run.manifest.extra.update({
        "attack": "lora",
        "pairs": {"n": len(pairs), "sources": sorted({p.source for p in pairs}),
                  "ids": [p.id for p in pairs]},
        "model_info": {"source": handle.source, "n_params": handle.n_params(),
                       **size_fields(handle),
                       "n_layers": handle.n_layers, "d_model": handle.d_model},
        "device": str(handle.device), "dtype": str(next(handle.model.parameters()).dtype),
    })
    run.save()


def finish_cell(run: Any, compute: dict[str, Any], wall: float, *, finish: bool = True) -> None:
    """Write `compute.json` and `loss.png`, record compute and wall time; with `finish`,
    mark the run `success`."""
    from refusalscope.attacks.lora import plot_loss
    from refusalscope.fileio import atomic_write_json

    atomic_write_json(run.file(COMPUTE), compute)
    plot_loss(run)
    run.manifest.extra["compute"] = compute
    run.manifest.extra["wall_seconds_total"] = round(wall, 3)
    if not finish:
        run.save()
        return
    run.finish("success")
    log.info("attack-lora %s: %d steps, %.3g FLOPs", run.id, compute["steps"],
             compute["flops_estimate"])


def run_cell(handle: ModelHandle, pairs: list[Any], cfg: LoraAttackConfig, run: Any, *,
             on_step: Callable[[int, int, float], None] | None = None,
             snapshot: Callable[[int, Any, Any], None] | None = None,
             on_memory: Callable[[Any], None] | None = None) -> dict[str, Any]:
    """Train one cell into `run` (resuming from its checkpoint) and finish its manifest."""
    from refusalscope.attacks.lora import train

    start_cell(run, handle, pairs)
    t0 = time.perf_counter()
    with run.guard():
        compute = train(handle, pairs, cfg, run, on_step=on_step, snapshot=snapshot,
                        on_memory=on_memory)
    finish_cell(run, compute, time.perf_counter() - t0)
    return compute


def write_snapshot(run: Any, source: Any, model: Any, compute: Any, handle: ModelHandle,
                   pairs: list[Any]) -> None:
    """Finish a shorter cell's `run` from the longest cell's trajectory at this step: its
    adapter, its prefix of `loss.jsonl` and the compute spent so far (`derived_from` says so)."""
    from refusalscope.attacks.lora import LOSS
    from refusalscope.fileio import read_jsonl, write_jsonl

    start_cell(run, handle, pairs)
    totals = compute.to_dict()
    model.save_pretrained(str(run.file("adapter")))
    write_jsonl(run.file(LOSS), [r for r in read_jsonl(source.file(LOSS))
                                 if r["step"] <= totals["steps"]])
    run.manifest.extra["derived_from"] = source.id
    finish_cell(run, totals, totals["wall_seconds"])


def resume(path: str, *, options: Any = None,
           on_step: Callable[[int, int, float], None] | None = None) -> CellResult:
    """Continue an interrupted attack-lora run in its own folder, from its last checkpoint."""
    from refusalscope.attacks.pairs import load_pairs
    from refusalscope.models.handle import ModelHandle
    from refusalscope.runs import open_unfinished

    run = open_unfinished(path, COMMAND)
    cfg = LoraAttackConfig.from_dict(run.manifest.config)
    pairs = load_pairs(cfg.n_data, seed=cfg.seed, target_kind=cfg.target_kind,
                       data_file=cfg.data_file)
    handle = ModelHandle.load(cfg.model, options=options)
    compute = run_cell(handle, pairs, cfg, run, on_step=on_step)
    return CellResult(cfg, str(run.path), False, compute)
