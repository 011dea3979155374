"""A model's size as fits use it: parameter counts, pretraining compute and the control flag.

Counts (numbers of scalars), per run:
- `n_params`: what the run loaded (a GGUF conversion unties the head, so 630M for the 494M
  Qwen2.5-0.5B): the manifest's `extra.model.n_params`, else the registry's nominal size;
- `n_released`: the released count, tied embeddings counted once (`extra.model.params_released`,
  else the registry's `params_released`, else `n_params`);
- `n_non_embedding`: without the input embedding and the LM head (Kaplan et al. 2020's N;
  `extra.model.params_non_embedding`, else the registry's, else `n_params`).
`N_KINDS` names the two a fit can use: "non-embedding" (the default) and "total" (released).

`pretrain_flops` = 6 · n_released · D, D = the registry's `pretrain_tokens` (NaN when unknown):
the scale-free compute axis of Howe et al. 2025 divides attack FLOPs by it.
A control (registry `control = True`, or `control = true` on a spec's model) is a model that
never refuses: size fits leave it out unless asked (`--include-controls`).
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

from refusalscope.errors import UserError

N_KINDS = ("non-embedding", "total")
_SUFFIX = {"k": 1e3, "m": 1e6, "b": 1e9, "t": 1e12}


@dataclass(frozen=True)
class ModelSize:
    n_params: int
    n_released: int
    n_non_embedding: int
    pretrain_flops: float
    control: bool


def count(value: Any) -> int | None:
    """A parameter or token count given as a number or as text ("494M", "1.54B", "18T")."""
    if value is None or value == "":
        return None
    if isinstance(value, int | float):
        return int(value) if value > 0 else None
    text = str(value).strip().lower()
    if text and text[-1] in _SUFFIX:
        return int(float(text[:-1]) * _SUFFIX[text[-1]])
    try:
        return int(float(text))
    except ValueError:
        return None


def registry_entry(*names: str | None) -> Any:
    """The first registry entry among `names` (a registry name, a "<base>+tar" label)."""
    from refusalscope.models.registry import REGISTRY

    for name in names:
        if not name:
            continue
        for cand in (name, name.split("+", 1)[0], Path(name).name):
            if cand in REGISTRY:
                return REGISTRY[cand]
    return None


def model_size(info: dict[str, Any], names: tuple[str | None, ...], *, run_id: str,
               base_params: int | None = None, controls: frozenset[str] = frozenset()
               ) -> ModelSize:
    """The size of the model a run evaluated: `info` is its manifest's `extra.model`, `names`
    the model's names to look up in the registry, `base_params` the base model's count where
    the run loaded an adapter too (the manifest's count then includes the adapter)."""
    entry = registry_entry(*names)
    n_params = base_params or count(info.get("n_params")) or count(getattr(entry, "params", None))
    if not n_params:
        raise UserError(f"run {run_id}: model {names[0]!r} has no parameter count (the "
                        "manifest lacks extra.model.n_params and the registry does not know it)")
    released = (count(info.get("params_released"))
                or count(getattr(entry, "params_released", None)) or n_params)
    non_emb = (count(info.get("params_non_embedding"))
               or count(getattr(entry, "params_non_embedding", None)) or n_params)
    tokens = count(getattr(entry, "pretrain_tokens", None))
    named = {n for n in names if n} | {Path(n).name for n in names if n}
    control = bool(getattr(entry, "control", False)) or bool(named & controls)
    return ModelSize(n_params, released, non_emb,
                     6.0 * released * tokens if tokens else float("nan"), control)
