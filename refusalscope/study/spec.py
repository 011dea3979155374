"""A study spec: models x attacks (with their grids) x seeds x eval prompts x scorers, in TOML.

Every table is checked key by key before anything runs: an unknown key, a model missing from
the registry, an empty grid axis or an attack that names a missing (or circular) `after` is a
one-line `UserError` that names the key and where it is (`attacks.lora.stepz`).

    name = "quickstart"
    seeds = [0]
    scorers = ["heuristic", "ensemble"]
    [eval]                      # split = "eval" | prompts = "file.jsonl"; n; max_new_tokens
    [[models]]                  # name = registry name or model folder; attacks = [...] (optional);
                                # control = true: never refuses, left out of size fits
    [attacks.lora]              # kind = "lora" (default: the table name); grid axes are lists
    [attacks.gcg]               # kind = "gcg"; after = "lora" attacks the LoRA-attacked model
                                # (kinds: every registered attack; keys and defaults: ATTACK_KEYS)
    [probe]                     # optional: activations per model and per attacked model
    [defenses.tar|steer]        # TAR-defended models attacked again; steering after LoRA cells
                                # (kinds: every registered defense; keys and defaults: DEFENSE_KEYS)
    [pairs]                     # LoRA data made once by `data pairs` (generator, steer, samples)

Shipped specs live in `refusalscope/study/specs/`; `load_spec("quickstart")` finds them by name.
"""

from __future__ import annotations

import tomllib
from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass, field
from importlib import resources
from pathlib import Path
from typing import Any

from refusalscope.errors import UserError

SCORERS = ("heuristic", "classifier", "ensemble")


class _RegistryKeys(Mapping[str, Any]):
    """Per registered kind, the keys of its spec table with their defaults, read live from a
    registry (`load()` -> (REGISTRY, study_keys)), so a kind registered later is a spec kind
    too."""

    def __init__(self, load: Callable[[], tuple[dict[str, Any], Callable[[Any], Any]]]):
        self._load = load

    def __getitem__(self, kind: str) -> Any:
        registry, keys = self._load()
        return keys(registry[kind])

    def __iter__(self) -> Iterator[str]:
        return iter(list(self._load()[0]))

    def __len__(self) -> int:
        return len(self._load()[0])


def _attack_registry() -> tuple[dict[str, Any], Callable[[Any], Any]]:
    from refusalscope.attacks.registry import REGISTRY, study_keys

    return REGISTRY, study_keys


def _defense_registry() -> tuple[dict[str, Any], Callable[[Any], Any]]:
    from refusalscope.defenses.registry import REGISTRY, study_keys

    return REGISTRY, study_keys


# Per attack kind: grid axes (lists; one value allowed) and fixed options with their defaults
# (`attacks.registry.study_keys`). A key a spec leaves out takes the attack config's default,
# except where the attack declares a study default (`study_defaults`): a study's deliberately
# cheaper CPU values, e.g. GCG 20 steps x 64 candidates (the config and `attack gcg`: 250 x
# 512), AutoDAN 4 generations x 8 (config: 100 x 64), LoRA 16 pairs (config: 64). The shipped
# specs set the values they use explicitly.
ATTACK_KEYS = _RegistryKeys(_attack_registry)
ATTACK_COMMON = ("kind", "after")
# Per attack kind: options kept in a node's params only when the spec sets them (so adding one
# leaves every existing node id as it was). lora target_modules: e.g. ["gate_proj", "up_proj"].
ATTACK_OPTIONAL: dict[str, tuple[str, ...]] = {"lora": ("target_modules",)}
# Per defense kind: the keys of a `[defenses.NAME]` table with their defaults
# (`defenses.registry.study_keys`: the config class's defaults, or the defense's
# `study_defaults`, such as steer's sweep that makes the direction).
DEFENSE_KEYS = _RegistryKeys(_defense_registry)
EVAL_KEYS = {"split": "eval", "prompts": None, "n": 32, "max_new_tokens": 64, "batch_size": 16}
# `[pairs]`: the LoRA attacks' training pairs, made once by `data pairs` (`data.pairgen`) and fed
# to every LoRA cell without its own `data`. steer: "ablate" (the generator's own refusal
# direction, from a probe-sweep node), "none", or a spec string "ablate:FILE" / "add:FILE:...".
# n: pairs to keep (default: the largest lora n_data).
PAIRS_KEYS = {"generator": "qwen2.5-coder-0.5b", "steer": "ablate", "samples": 4, "n": None,
              "temperature": 0.7, "top_p": 0.95, "max_new_tokens": 128, "seed": 0,
              "scorer": "ensemble", "sweep_n": 64, "sweep_n_val": 32}
PROBE_KEYS = {"n": 32, "layers": "all", "positions": "post-instruction", "sites": ["resid_pre"],
              "split": "direction", "attacked": True}
TOP_KEYS = ("name", "description", "seeds", "scorers", "drift", "eval", "models", "attacks",
            "probe", "device", "defenses", "pairs")


@dataclass(frozen=True)
class ModelSpec:
    name: str
    attacks: tuple[str, ...] | None = None  # None: every attack in the spec
    control: bool = False  # a model that never refuses (the registry may say so too)


@dataclass(frozen=True)
class AttackSpec:
    name: str
    kind: str
    grid: dict[str, tuple[Any, ...]]
    fixed: dict[str, Any]
    after: str | None = None


@dataclass(frozen=True)
class DefenseSpec:
    name: str
    kind: str  # a registered defense (`defenses.registry`): tar | steer | ...
    params: dict[str, Any]


@dataclass(frozen=True)
class Spec:
    """A validated study spec (data only; `graph.expand` turns it into runs)."""

    name: str
    models: tuple[ModelSpec, ...]
    attacks: tuple[AttackSpec, ...] = ()
    seeds: tuple[int, ...] = (0,)
    scorers: tuple[str, ...] = ("heuristic",)
    drift: bool = True
    eval: dict[str, Any] = field(default_factory=lambda: dict(EVAL_KEYS))
    probe: dict[str, Any] | None = None
    description: str = ""
    device: str = "auto"
    defenses: tuple[DefenseSpec, ...] = ()
    pairs: dict[str, Any] | None = None  # `[pairs]` with defaults filled in (PAIRS_KEYS)

    def to_dict(self) -> dict[str, Any]:
        return {"name": self.name, "description": self.description, "seeds": list(self.seeds),
                "scorers": list(self.scorers), "drift": self.drift, "device": self.device,
                "eval": dict(self.eval),
                "models": [{"name": m.name, **({"attacks": list(m.attacks)}
                                                if m.attacks is not None else {}),
                            **({"control": True} if m.control else {})}
                           for m in self.models],
                "attacks": {a.name: {"kind": a.kind, **{k: list(v) for k, v in a.grid.items()},
                                     **a.fixed, **({"after": a.after} if a.after else {})}
                            for a in self.attacks},
                **({"probe": dict(self.probe)} if self.probe is not None else {}),
                **({"defenses": {d.name: {"kind": d.kind, **d.params} for d in self.defenses}}
                   if self.defenses else {}),
                **({"pairs": dict(self.pairs)} if self.pairs is not None else {})}

    @classmethod
    def from_dict(cls, d: dict[str, Any], *, base: Path | None = None) -> Spec:
        return parse_spec(d, base=base)

    def controls(self) -> tuple[str, ...]:
        """Names of the spec's models marked `control = true` (for `gather_points(controls=)`;
        the registry's own controls are marked there whatever the spec says)."""
        return tuple(m.name for m in self.models if m.control)


def shipped_specs() -> list[str]:
    """Names of the specs that ship with the package (`quickstart`, `seed-plan`, `defenses`)."""
    root = resources.files("refusalscope.study") / "specs"
    return sorted(p.name[:-5] for p in root.iterdir() if p.name.endswith(".toml"))


def spec_path(name_or_path: str) -> Path:
    """A TOML file path, or the path of a shipped spec named `name_or_path`."""
    p = Path(name_or_path)
    if p.is_file():
        return p
    if p.suffix != ".toml" and name_or_path in shipped_specs():
        return Path(str(resources.files("refusalscope.study") / "specs" / f"{name_or_path}.toml"))
    raise UserError(f"no spec file {name_or_path!r} and no shipped spec of that name "
                    f"(shipped: {', '.join(shipped_specs())})")


def load_spec(name_or_path: str) -> Spec:
    """Read and validate a spec file (or a shipped spec by name). Nothing runs.

    Example:
        >>> load_spec("quickstart").models[0].name
        'smollm2-135m'
    """
    path = spec_path(name_or_path)
    try:
        data = tomllib.loads(path.read_text(encoding="utf-8"))
    except tomllib.TOMLDecodeError as e:
        raise UserError(f"{path}: not valid TOML: {e}") from None
    data.setdefault("name", path.stem)
    return parse_spec(data, base=path.parent)


def _unknown(table: dict[str, Any], allowed: Any, where: str) -> None:
    for key in table:
        if key not in allowed:
            loc = f"{where}.{key}" if where else key
            raise UserError(f"unknown key {key!r} in the spec (at {loc}); allowed here: "
                            f"{', '.join(sorted(allowed))}")


def _list(value: Any, where: str) -> list[Any]:
    out = value if isinstance(value, list) else [value]
    if not out:
        raise UserError(f"empty grid at {where}: give at least one value")
    return out


def _models(raw: Any, base: Path | None) -> tuple[ModelSpec, ...]:
    from refusalscope.models.registry import REGISTRY, known_names

    if not raw:
        raise UserError("the spec names no models (add [[models]] tables or models = [...])")
    out = []
    for i, item in enumerate(raw if isinstance(raw, list) else [raw]):
        entry = {"name": item} if isinstance(item, str) else item
        if not isinstance(entry, dict):
            raise UserError(f"models[{i}] must be a name or a table with name = ...")
        _unknown(entry, ("name", "attacks", "control"), f"models[{i}]")
        if not isinstance(entry.get("control", False), bool):
            raise UserError(f"models[{i}].control must be true or false")
        name = entry.get("name")
        if not isinstance(name, str):
            raise UserError(f"models[{i}] has no name")
        if name not in REGISTRY:
            folder = Path(name) if Path(name).is_absolute() or base is None else base / name
            if not folder.is_dir():
                raise UserError(f"model {name!r} (at models[{i}]) is not in the registry "
                                f"({', '.join(known_names())}) nor a model folder")
            name = str(folder.resolve())
        attacks = entry.get("attacks")
        out.append(ModelSpec(name, tuple(attacks) if attacks is not None else None,
                             bool(entry.get("control", False))))
    return tuple(out)


def _kind(section: str, name: str, raw: Any, kinds: dict[str, Any]) -> tuple[str, str]:
    """(where, kind) of a `[section.NAME]` table; kind defaults to the table's name."""
    where = f"{section}.{name}"
    if not isinstance(raw, dict):
        raise UserError(f"{where} must be a table")
    kind = raw.get("kind", name)
    if kind not in kinds:
        raise UserError(f"unknown {section[:-1]} kind {kind!r} at {where}.kind: one of "
                        f"{', '.join(kinds)}")
    return where, kind


def _attack(name: str, raw: Any, base: Path | None) -> AttackSpec:
    where, kind = _kind("attacks", name, raw, ATTACK_KEYS)
    axes, fixed_defaults = ATTACK_KEYS[kind]
    optional = ATTACK_OPTIONAL.get(kind, ())
    _unknown(raw, (*axes, *fixed_defaults, *ATTACK_COMMON, *optional), where)
    grid = {k: tuple(_list(raw.get(k, v), f"{where}.{k}")) for k, v in axes.items()}
    fixed = {k: raw.get(k, v) for k, v in fixed_defaults.items()}
    fixed.update({k: raw[k] for k in optional if k in raw})
    modules = fixed.get("target_modules")
    if modules is not None and (not isinstance(modules, list) or not modules
                                or not all(isinstance(m, str) and m for m in modules)):
        raise UserError(f"{where}.target_modules must be a list of module names")
    _resolve_data(fixed, base)
    return AttackSpec(name, kind, grid, fixed, raw.get("after"))


def _resolve_data(table: dict[str, Any], base: Path | None) -> None:
    """A relative `data` file is relative to the spec's folder."""
    if table.get("data") is not None and base is not None and not Path(table["data"]).is_absolute():
        table["data"] = str((base / table["data"]).resolve())


def _defenses(raw: Any, attacks: tuple[AttackSpec, ...],
              base: Path | None) -> tuple[DefenseSpec, ...]:
    """`[defenses.NAME]` tables: kind (default: the name), then that kind's options, completed
    by the defense (`Defense.study_table`). A runtime defense acts after LoRA cells (the graph
    makes its nodes after each `steps` cell; another weights attack has no cells)."""
    from refusalscope.defenses.base import RUNTIME
    from refusalscope.defenses.registry import get

    if not isinstance(raw, dict):
        raise UserError("defenses must be tables: [defenses.NAME]")
    out = []
    for name, table in raw.items():
        where, kind = _kind("defenses", name, table, DEFENSE_KEYS)
        keys = DEFENSE_KEYS[kind]
        _unknown(table, ("kind", *keys), where)
        d = get(kind)
        params = d.study_table({**keys, **{k: v for k, v in table.items() if k != "kind"}},
                               where)
        if d.kind == RUNTIME and not any(a.kind == "lora" for a in attacks):
            raise UserError(f"{where}: the {kind} defense acts after a LoRA attack's cells; "
                            "the spec has no [attacks.*] of kind lora")
        _resolve_data(params, base)
        out.append(DefenseSpec(name, kind, params))
    return tuple(out)


def _check_after(attacks: tuple[AttackSpec, ...]) -> None:
    """Every `after` names an attack in the spec, without cycles, and a LoRA attack last."""
    by_name = {a.name: a for a in attacks}
    for a in attacks:
        seen = [a.name]
        cur = a
        while cur.after is not None:
            if cur.after not in by_name:
                raise UserError(f"attacks.{cur.name}.after names {cur.after!r}, which is not an "
                                f"attack in the spec (missing input)")
            if cur.after in seen:
                raise UserError(f"cycle in attacks: {' -> '.join([*seen, cur.after])}")
            seen.append(cur.after)
            cur = by_name[cur.after]
    from refusalscope.attacks.registry import REGISTRY

    def weights(x: AttackSpec) -> bool:
        return REGISTRY[x.kind].kind == "weights"

    for a in attacks:
        if a.after is not None and (weights(a) or not weights(by_name[a.after])):
            raise UserError(f"attacks.{a.name}.after: a prompt attack (gcg, autodan, template) "
                            "can follow a weights attack such as lora (it then attacks the "
                            "LoRA-attacked model); nothing else")
        if a.after is not None and by_name[a.after].kind != "lora":
            # a prompt attack's run loads its model with a LoRA adapter, not another attack's
            raise UserError(f"attacks.{a.name}.after: only a lora attack can be followed in a "
                            f"study yet, not {by_name[a.after].kind!r}")


def parse_spec(data: dict[str, Any], *, base: Path | None = None) -> Spec:
    """Validate a spec's raw tables into a `Spec`; every problem is a one-line `UserError`."""
    _unknown(data, TOP_KEYS, "")
    ev = dict(data.get("eval", {}))
    _unknown(ev, EVAL_KEYS, "eval")
    ev = {**EVAL_KEYS, **ev}
    if ev["prompts"] is not None and base is not None and not Path(ev["prompts"]).is_absolute():
        ev["prompts"] = str((base / ev["prompts"]).resolve())
    if ev["prompts"] is not None and not Path(ev["prompts"]).is_file():
        raise UserError(f"eval.prompts: no such file {ev['prompts']}")
    for key in ("n", "max_new_tokens", "batch_size"):
        if not isinstance(ev[key], int) or ev[key] < 1:
            raise UserError(f"eval.{key} must be a positive integer (got {ev[key]!r})")
    attacks_raw = data.get("attacks", {})
    if not isinstance(attacks_raw, dict):
        raise UserError("attacks must be tables: [attacks.NAME]")
    attacks = tuple(_attack(n, a, base) for n, a in attacks_raw.items())
    _check_after(attacks)
    models = _models(data.get("models"), base)
    names = {a.name for a in attacks}
    for i, m in enumerate(models):
        for a in m.attacks or ():
            if a not in names:
                raise UserError(f"models[{i}].attacks names {a!r}, which is not an attack in "
                                f"the spec ({', '.join(sorted(names)) or 'none'})")
    scorers = tuple(_list(data.get("scorers", ["heuristic"]), "scorers"))
    for s in scorers:
        if s not in SCORERS:
            raise UserError(f"unknown scorer {s!r} at scorers: one of {', '.join(SCORERS)}")
    seeds = tuple(_list(data.get("seeds", [0]), "seeds"))
    if not all(isinstance(s, int) for s in seeds):
        raise UserError(f"seeds must be integers (got {list(seeds)})")
    probe = data.get("probe")
    if probe is not None:
        _unknown(probe, PROBE_KEYS, "probe")
        probe = {**PROBE_KEYS, **probe}
    return Spec(name=str(data.get("name", "study")), models=models, attacks=attacks,
                seeds=seeds, scorers=scorers, drift=bool(data.get("drift", True)), eval=ev,
                probe=probe, description=str(data.get("description", "")),
                device=str(data.get("device", "auto")),
                defenses=_defenses(data.get("defenses", {}), attacks, base),
                pairs=_pairs(data.get("pairs"), attacks, base))


def _pairs(raw: Any, attacks: tuple[AttackSpec, ...], base: Path | None) -> dict[str, Any] | None:
    """`[pairs]` with defaults; `n` defaults to the largest lora `n_data` of the spec."""
    if raw is None:
        return None
    if not isinstance(raw, dict):
        raise UserError("pairs must be a table: [pairs]")
    _unknown(raw, PAIRS_KEYS, "pairs")
    p = {**PAIRS_KEYS, **raw}
    lora = [a for a in attacks if a.kind == "lora"]
    if not lora:
        raise UserError("[pairs] feeds LoRA attacks; the spec has no [attacks.*] of kind lora")
    if p["n"] is None:
        p["n"] = max(max(a.grid["n_data"]) for a in lora)
    if base is not None and (base / str(p["generator"])).is_dir():  # a model folder
        p["generator"] = str((base / p["generator"]).resolve())
    for key in ("n", "samples", "max_new_tokens", "sweep_n", "sweep_n_val"):
        if not isinstance(p[key], int) or p[key] < 1:
            raise UserError(f"pairs.{key} must be a positive integer (got {p[key]!r})")
    steer = p["steer"]
    if not isinstance(steer, str) or not steer:
        raise UserError("pairs.steer must be \"ablate\", \"none\" or a spec like ablate:DIRS.h5")
    if steer not in ("ablate", "none"):
        from refusalscope.interp.steering import SteerSpec

        spec = SteerSpec.parse(steer)
        if base is not None and not Path(spec.path).is_absolute():
            from dataclasses import replace

            spec = replace(spec, path=str((base / spec.path).resolve()))
        p["steer"] = spec.to_string()
    from refusalscope.data.pairgen import PairsConfig

    PairsConfig(generator=p["generator"], temperature=p["temperature"], top_p=p["top_p"],
                max_new_tokens=p["max_new_tokens"], seed=p["seed"], scorer=p["scorer"])
    return p
