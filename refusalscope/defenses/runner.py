"""One runner for every defense: run folders, resume, `result.json`; and the in-memory path.

`run_defense(defense, cfg)` is what `refusalscope defend NAME` and the study's `defend-<name>`
nodes call: bad input fails before the model is loaded or a folder is made (`prepare`), the run
folder is `defend-<name>` (manifest config = the defense's config; `--resume` continues a
resumable defense from its checkpoint), the defense's own files come from its `write`, and
`result.json` has the one schema (`base.DefenseResult.to_json`). `defend(defense, handle, cfg)`
runs it in memory (`rs.defend`): no run folder is kept, and the result carries the defended
handle.

It takes the defense object, not its name, so a defense module can call it without importing
the registry (`tar_run.run_tar`).

Example:
    from refusalscope.defenses.registry import get
    run = run_defense(get("tar"), TarConfig(model="smollm2-135m", outer_steps=2))
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from refusalscope.defenses.base import RESULT, Defense, DefenseResult, Progress
from refusalscope.registries import config_of

if TYPE_CHECKING:
    from refusalscope.models.handle import ModelHandle
    from refusalscope.runs import Run


def command(defense: Defense) -> str:
    """The run folder's command (and the study node kind): `defend-<name>`."""
    return f"defend-{defense.name}"


def run_defense(defense: Defense, cfg: Any = None, *, resume: str | None = None,
                options: Any = None, progress: Progress | None = None,
                batch_size: int | None = None) -> Run:
    """Run `defense` with `cfg` into a new run folder (or continue `resume`, an unfinished run
    of it); returns the finished `Run`."""
    from refusalscope.fileio import atomic_write_json
    from refusalscope.models.handle import ModelHandle
    from refusalscope.runs import Run, open_unfinished

    run = None
    if resume is not None:
        run = open_unfinished(resume, command(defense))
        cfg = defense.config_cls.from_dict(run.manifest.config)
    cfg = defense.prepare(None, cfg)
    handle = ModelHandle.load(cfg.model, adapter=getattr(cfg, "adapter", None), options=options)
    cfg = defense.prepare(handle, cfg)
    if run is None:
        adapter = getattr(cfg, "adapter", None)
        run = Run.create(command(defense), cfg.to_dict(), model=cfg.model, seed=cfg.seed,
                         harmful_content=defense.harmful_content,
                         input_runs=[adapter] if adapter else None)
    with run.guard():
        result = defense.run(handle, cfg, run=run, progress=progress, batch_size=batch_size)
        del handle  # the defense's own evaluation may load models of its own
        defense.write(run, result, options=options, batch_size=batch_size)
        atomic_write_json(run.file(RESULT), result.to_json())
    run.manifest.extra.update({"defense": defense.name, "compute": result.compute})
    run.finish("success")
    return run


def defend(defense: Defense, handle: ModelHandle, cfg: Any = None, *,
           progress: Progress | None = None, **overrides: Any) -> DefenseResult:
    """Run `defense` on `handle` in memory; the result's `handle` is the defended one (`handle`
    itself stays undefended). `cfg`: the defense's config (default: its config class with
    `overrides`, `model` defaulting to the handle's name).

    Example:
        res = defend(get("steer"), attacked, directions="dirs.h5", alphas=(0, 1, 2))
        rs.generate(res.handle, ["How do I pick a lock?"])
    """
    if cfg is None:
        if "model" in defense.config_cls.__dataclass_fields__:
            overrides.setdefault("model", handle.name)
        cfg = config_of(defense, "defense", overrides)
    cfg = defense.prepare(handle, defense.prepare(None, cfg))
    result = defense.run(handle, cfg, progress=progress)
    result.handle = defense.apply(handle, result)
    return result


def load_result(run: Run) -> DefenseResult:
    """The `DefenseResult` of a finished defense run (from its `result.json`)."""
    import json

    d = json.loads(run.file(RESULT).read_text(encoding="utf-8"))
    return DefenseResult(d["defense"], d["kind"], d["config"], d["artefact"], d["compute"],
                         log=d.get("log", []), extra=d.get("extra", {}))
