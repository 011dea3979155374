"""The shape every defense has: the `Defense` protocol and the one `DefenseResult` schema.

A defense is one module holding a frozen config class (the only copy of its defaults) and an
object with `name`, `kind` and a few methods; `registry.register(obj)` makes it usable from the
CLI (`defend NAME`), the study (`[defenses.NAME]`), the cost planner and `rs.defend(...)`.
`runner.run_defense` does everything around it: the run folder, resume, `result.json`.

Two kinds:
- ``weights``: `run` trains and returns new weights (TAR: a merged model folder, `artefact
  ["model"]`); `apply` loads them. A study attacks the defended model again (every node of the
  model's subgraph reads it from its `defended` input).
- ``runtime``: `run` chooses an intervention used while generating (steer: the refusal
  direction added back at a chosen alpha); `apply` gives a handle with it always on, and
  `generation(outputs)` the `GenerateConfig` fields that switch it on in a `generate` run. A
  study puts it after every LoRA cell of the undefended model (the spec check asks for one).
"""

from __future__ import annotations

from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, Protocol, runtime_checkable

from refusalscope.attacks.base import config_defaults
from refusalscope.models.handle import ModelHandle

if TYPE_CHECKING:
    from refusalscope.compute import ParamCounts
    from refusalscope.models.hooks import HookFn
    from refusalscope.runs import Run

WEIGHTS, RUNTIME = "weights", "runtime"
KINDS = (WEIGHTS, RUNTIME)
SCHEMA = "refusalscope.defense-result/1"
RESULT = "result.json"
Progress = Callable[[dict[str, Any]], None]  # one log row per step (TAR) / alpha (steer)


@runtime_checkable
class Defense(Protocol):
    """A defense, as the registry, runner, CLI and study see it.

    `study_keys`: the keys a `[defenses.NAME]` spec table takes; their defaults are the config
    class's, except those in `study_defaults` (study-only keys such as the sweep that makes a
    direction, or values a study uses instead; the module says why). `study_inputs`: per input
    a runtime defense reads in a study (only ``directions`` is known: a `probe-sweep` node
    made from the keys listed), its config field takes that input's file. `work`: `study
    plan`'s measured rate ("train" | "generate" | "prefill"). `resumable`: an interrupted run
    continues from its checkpoint (else a study starts it over).
    """

    name: str
    kind: str  # "weights" | "runtime"
    config_cls: type
    work: str
    resumable: bool
    harmful_content: bool  # the run folder holds completions to harmful requests
    study_keys: tuple[str, ...]
    study_defaults: dict[str, Any]
    study_inputs: dict[str, tuple[str, ...]]

    def cost(self, cfg: Any, model_info: ParamCounts) -> float:
        """Ledger FLOPs of one run of `cfg` on a model with parameter classes `model_info`
        (an upper bound where the real count depends on replies)."""
        ...

    def resources(self, cfg: Any | None) -> dict[str, float]:
        """What a scheduler should give one run: `{"cpus": .., "gpus": ..}`."""
        ...

    def prepare(self, handle: ModelHandle | None, cfg: Any) -> Any:
        """Check `cfg` (a `UserError` on bad input) and return the config the run is saved
        with (inputs pinned). Called with `handle=None` before the model is loaded, then with
        it, both before a run folder is made."""
        ...

    def run(self, handle: ModelHandle, cfg: Any, *, run: Run | None = None,
            progress: Progress | None = None, batch_size: int | None = None) -> DefenseResult:
        """Train (weights) or choose (runtime) the defense on `handle`; with `run`, log and
        checkpoint into it and continue from its saved state. `handle` is left undefended."""
        ...

    def apply(self, handle: ModelHandle, result: DefenseResult) -> ModelHandle:
        """The defended handle: the new weights loaded, or `handle` with the intervention on."""
        ...

    def write(self, run: Run, result: DefenseResult, *, options: Any = None,
              batch_size: int | None = None) -> None:
        """The defense's own files in its finished run (tables, figures, evaluations)."""
        ...

    def outputs(self, run: Run) -> dict[str, Any]:
        """What a study node records of a finished run (beside `run`): weights defenses give
        `model` (the defended model folder), runtime defenses what `generation` reads."""
        ...

    def generation(self, outputs: dict[str, Any]) -> dict[str, Any]:
        """`GenerateConfig` fields that put the defense on in a generate run ({} for a
        weights defense: the defended model is the run's model)."""
        ...

    def study_table(self, params: dict[str, Any], where: str) -> dict[str, Any]:
        """A `[defenses.NAME]` table (`where`) with every key filled, checked and completed
        (e.g. a default that depends on another key); a `UserError` names the key."""
        ...


@dataclass
class DefenseResult:
    """One schema for every defense: what was made (`artefact`: a model folder, a steer spec),
    at what cost (`compute`: the ledger's `to_dict()`, FLOPs in `flops`), with the per-step
    `log` and the defense's own numbers in `extra`. `handle`: the defended handle (`rs.defend`
    fills it; never saved)."""

    defense: str
    kind: str
    config: dict[str, Any]
    artefact: dict[str, Any]
    compute: dict[str, Any]
    log: list[dict[str, Any]] = field(default_factory=list)
    extra: dict[str, Any] = field(default_factory=dict)
    handle: Any = field(default=None, repr=False, compare=False)

    @property
    def flops(self) -> float:
        return float(self.compute.get("flops", self.compute.get("flops_estimate", 0)))

    def to_json(self) -> dict[str, Any]:
        """`result.json` (every defense's has these keys)."""
        return {"schema": SCHEMA, "defense": self.defense, "kind": self.kind,
                "config": self.config, "artefact": self.artefact, "compute": self.compute,
                "flops": self.flops, "log": self.log, "extra": self.extra}


RESULT_KEYS = ("schema", "defense", "kind", "config", "artefact", "compute", "flops", "log",
               "extra")


def study_keys(defense: Defense) -> dict[str, Any]:
    """Keys of a `[defenses.NAME]` table with their defaults, in `study_keys` order (the config
    class's defaults, unless `study_defaults` says otherwise; tuples as lists, as TOML has)."""
    base = {**config_defaults(defense.config_cls), **defense.study_defaults}
    return {k: list(base[k]) if isinstance(base[k], tuple) else base[k]
            for k in defense.study_keys}


def config_from(defense: Defense, values: dict[str, Any]) -> Any:
    """The defense's config from a study node's params (and its inputs' files): names narrowed
    to the config's fields, the spec's `data` as `data_file`, lists as tuples."""
    names = defense.config_cls.__dataclass_fields__
    out = {k: tuple(v) if isinstance(v, list) else v for k, v in values.items() if k in names}
    if "data" in values and "data_file" in names:
        out["data_file"] = values["data"]
    return defense.config_cls(**out)


class DefendedHandle(ModelHandle):
    """`handle` with a runtime defense always on: its hooks go in with every `hooks(...)` block
    (generation and attack evaluation install one; nested blocks add them once) and its
    `system` turn is the default of `format_prompt`. The model and tokenizer are shared."""

    def __init__(self, handle: ModelHandle, *, hooks: Sequence[tuple[str, HookFn]] = (),
                 system: str | None = None, defense: str = ""):
        self.__dict__.update(handle.__dict__)
        self.defense_hooks = list(hooks)
        self.defense_system = system
        self.defense = defense
        self._active = False

    @contextmanager
    def hooks(self, hooks: Sequence[tuple[str, HookFn]]) -> Iterator[None]:
        extra = [] if self._active else self.defense_hooks
        outer = not self._active
        self._active = True
        try:
            with super().hooks([*extra, *hooks]):
                yield
        finally:
            if outer:
                self._active = False

    def format_prompt(self, prompt: str, system: str | None = None) -> str:
        return super().format_prompt(prompt, self.defense_system if system is None else system)
