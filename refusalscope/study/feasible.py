"""Can each cell of a study run here? Checked by `study plan` before anything runs.

Three checks per node, each a one-line `Problem` naming the node:

- **pairs**: a LoRA attack or TAR defense asks for `n_data` training pairs; the pool it draws
  from (`attacks.pairs.load_pairs`) must hold that many (pairs made inside the study by a
  `[pairs]` node do not exist yet and are not checked).
- **memory**: the model's weights alone (registry parameter count x bytes per weight: 2 for
  bfloat16 on a GPU, 4 for float32 on the CPU) must fit in the GPU's free memory or the
  machine's RAM, with `memory.HEADROOM` kept free. A lower bound: activations and optimiser state come on top.
- **gated**: a gated hub model (the registry's `gated`) not yet in the local hub cache needs a
  token (`HF_TOKEN`, or `huggingface-cli login`).
- **held out**: a defense node reading a sweep's direction (`defend steer`) must skip the
  prompts that sweep was selected on.
"""

from __future__ import annotations

import os
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from typing import Any

from refusalscope.errors import UserError
from refusalscope.memory import GiB, HEADROOM

TRAINS_ON_PAIRS = ("attack-lora",)  # and every defense whose config takes `n_data` (TAR)


@dataclass(frozen=True)
class Problem:
    """Why node `node` (`label`, for people) cannot run as planned."""

    node: str
    label: str
    check: str  # pairs | memory | gated | held-out
    message: str


def resolve_device(device: str) -> str:
    """'auto' -> 'cuda' when a GPU is visible, else 'cpu'; anything else unchanged."""
    if device != "auto":
        return device
    try:
        import torch
    except ImportError:  # pragma: no cover - torch is a dependency
        return "cpu"
    return "cuda" if torch.cuda.is_available() else "cpu"


def free_bytes(device: str) -> int | None:
    """Memory for one process on `device`, in bytes: CUDA, free + what torch holds; CPU, the
    physical RAM (what other processes use now changes by the minute); None when unknown."""
    if device.startswith("cuda"):
        from refusalscope.memory import device_budget

        return device_budget(device)
    if device == "cpu":
        try:
            return os.sysconf("SC_PHYS_PAGES") * os.sysconf("SC_PAGE_SIZE")
        except (ValueError, OSError, AttributeError):  # pragma: no cover - not POSIX
            return None
    return None


def has_hub_token() -> bool:
    """Whether a Hugging Face token is configured (environment or `huggingface-cli login`)."""
    if os.environ.get("HF_TOKEN") or os.environ.get("HUGGING_FACE_HUB_TOKEN"):
        return True
    try:
        from huggingface_hub import get_token
    except ImportError:  # pragma: no cover
        return False
    return bool(get_token())


def _hub_cached(hub_id: str) -> bool:
    try:
        from huggingface_hub import try_to_load_from_cache
    except ImportError:  # pragma: no cover
        return False
    return isinstance(try_to_load_from_cache(hub_id, "config.json"), str)


def _gated(model: str) -> str | None:
    from refusalscope.models.registry import REGISTRY

    e = REGISTRY.get(model)
    if e is None or not e.gated or e.hub_id is None:
        return None
    if _hub_cached(e.hub_id) or has_hub_token():
        return None
    return (f"{model} ({e.hub_id}) is gated on the hub and not downloaded: accept its licence "
            "on huggingface.co and set HF_TOKEN (or run `huggingface-cli login`)")


def _memory(model: str, device: str, budget: int | None) -> str | None:
    from refusalscope.models.registry import REGISTRY

    e = REGISTRY.get(model)
    if e is None or e.params_released is None or budget is None:
        return None
    need = e.params_released * (4 if device == "cpu" else 2)
    if need <= (1 - HEADROOM) * budget:
        return None
    return (f"{model} needs at least {need / GiB:.1f} GiB for its weights alone on {device}, "
            f"which has {budget / GiB:.1f} GiB ({1 - HEADROOM:.0%} usable): use a larger "
            "device or drop the model")


def _pairs(params: dict[str, Any], cache: dict[tuple[Any, ...], str | None]) -> str | None:
    key = (params.get("n_data"), params.get("seed", 0), params.get("target_kind", "auto"),
           params.get("data"))
    if key not in cache:
        from refusalscope.attacks.pairs import load_pairs

        try:
            load_pairs(int(key[0]), seed=int(key[1]), target_kind=str(key[2]), data_file=key[3])
            cache[key] = None
        except UserError as e:
            cache[key] = f"n_data = {key[0]}: {e}"
    return cache[key]


def _held_out(node: Any, by_id: dict[str, Any]) -> str | None:
    sweep = by_id.get(node.inputs.get("directions", ""))
    if sweep is None:
        return None
    used = int(sweep.params.get("n", 0)) + int(sweep.params.get("n_val", 0))
    skip = int(node.params.get("skip", 0))
    if skip >= used:
        return None
    return (f"skip = {skip}: the direction was selected on the first {used} direction-split "
            f"prompts of each class (its sweep's n + n_val); set skip = {used} or more")


def check_nodes(nodes: Iterable[Any], *, budget: Callable[[str], int | None] = free_bytes,
                device_of: Callable[[str], str] = resolve_device) -> list[Problem]:
    """Every problem of `nodes` (a study's expanded graph), in node order.

    `budget(device)` gives free bytes (None: unknown, not checked); `device_of` resolves
    'auto'. Both default to this machine's.

    Example:
        for p in check_nodes(expand(load_spec("quickstart"))):
            print(p.node, p.check, p.message)
    """
    from refusalscope.defenses.registry import node_defense

    nodes = list(nodes)
    by_id = {n.id: n for n in nodes}
    budgets: dict[str, int | None] = {}
    pairs_cache: dict[tuple[Any, ...], str | None] = {}
    out = []
    for n in nodes:
        p = n.params
        found: list[tuple[str, str | None]] = []
        model = p.get("model")
        if isinstance(model, str):
            dev = device_of(str(p.get("device", "auto")))
            if dev not in budgets:
                budgets[dev] = budget(dev)
            found += [("gated", _gated(model)), ("memory", _memory(model, dev, budgets[dev]))]
        d = node_defense(n.kind)
        trains = n.kind in TRAINS_ON_PAIRS or (
            d is not None and "n_data" in d.config_cls.__dataclass_fields__)
        if trains and p.get("n_data") is not None and "pairs" not in n.inputs:
            found.append(("pairs", _pairs(p, pairs_cache)))
        if d is not None and "directions" in n.inputs:
            found.append(("held-out", _held_out(n, by_id)))
        out += [Problem(n.id, n.label, check, msg) for check, msg in found if msg]
    return out
