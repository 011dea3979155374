"""Three ways to read residual-stream activations, which must agree: native hooks, TransformerLens'
`TransformerBridge` and nnsight's `LanguageModel`.

Each back-end is opened once around an already-loaded `ModelHandle` and then called per batch:
`capture(enc, sites, reduce)` runs one forward pass over the tokenized batch `enc` and returns
`{(kind, layer): reduce(x)}` where `x` is the site's activation `(batch, seq, d_model)` and
`reduce` (e.g. `positions.gather`) shrinks it right away, inside the hook or the trace, so a
batch never keeps more than the reduced arrays.

* ``native``: `handle.hooks` (PyTorch forward hooks, removed after every call).
* ``transformer-lens``: `TransformerBridge.boot_transformers(name, hf_model=...)`; hook points
  ``blocks.{L}.hook_resid_pre`` etc. have our site names. The bridge wraps the model *in place*
  (its decoder layers become bridge components and attention is switched to the eager kernel),
  so use a handle opened for this back-end only.
* ``nnsight``: `LanguageModel(model, tokenizer=...)`, `.trace()` with `.save()`d layer inputs and
  outputs, read in execution order (nnsight requires it).

A site a back-end cannot read raises `UserError`.
"""

from __future__ import annotations

import warnings
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from typing import Any

from refusalscope.errors import UserError
from refusalscope.models.sites import Site, get_module

BACKENDS = ("native", "transformer-lens", "nnsight")
Reduce = Callable[[Any], Any]
Capture = Callable[[dict[str, Any], Sequence[Site], Reduce], dict[tuple[str, int], Any]]
_ORDER = {"resid_pre": 0, "attn_out": 1, "resid_mid": 2, "mlp_out": 3, "resid_post": 4}


def check_backend(name: str) -> None:
    if name not in BACKENDS:
        raise UserError(f"unknown backend {name!r}: one of {', '.join(BACKENDS)}")


@contextmanager
def open_backend(handle: Any, name: str) -> Iterator[Capture]:
    """A `capture(enc, sites, reduce)` function for back-end `name` around `handle`.

    Example:
        with open_backend(handle, "nnsight") as capture:
            acts = capture(enc, [Site(3, "resid_pre")], lambda x: x[:, -1:])
    """
    check_backend(name)
    if name == "native":
        yield _native(handle)
    elif name == "transformer-lens":
        yield _transformer_lens(handle)
    else:
        yield _nnsight(handle)


def _forward_kwargs(enc: dict[str, Any]) -> dict[str, Any]:
    return {"input_ids": enc["input_ids"], "attention_mask": enc["attention_mask"],
            "use_cache": False}


def _native(handle: Any) -> Capture:
    import torch

    def capture(enc: dict[str, Any], sites: Sequence[Site], reduce: Reduce):  # type: ignore[no-untyped-def]
        out: dict[tuple[str, int], Any] = {}

        def read(x: Any, site: Site) -> None:
            out[(site.kind, site.layer)] = reduce(x.detach())

        with torch.inference_mode(), handle.hooks([(s.name, read) for s in sites]):
            # logits only for the last position: the head is not what we read
            handle.model(**_forward_kwargs(enc), logits_to_keep=1)
        return out

    return capture


def _transformer_lens(handle: Any) -> Capture:
    import torch

    # The legacy HookedTransformer is gone in transformer-lens 4.x; the bridge wraps HF modules.
    import transformer_lens.model_bridge.sources.transformers  # noqa: F401  (attaches boot_*)
    from transformer_lens.model_bridge import TransformerBridge

    model = handle.base_model
    try:
        bridge = TransformerBridge.boot_transformers(
            handle.name, hf_model=model, tokenizer=handle.tokenizer,
            device=str(handle.device), dtype=next(model.parameters()).dtype,
            # a config built in code has no `architectures`; the bridge picks its adapter by it
            hf_config_overrides={"architectures": [type(model).__name__]})
    except (ValueError, NotImplementedError, KeyError) as e:
        first = str(e).splitlines()[0][:160] if str(e) else type(e).__name__
        raise UserError(f"transformer-lens cannot wrap {handle.name} "
                        f"({model.config.model_type}): {first}") from None
    names = set(bridge.hook_dict)

    def capture(enc: dict[str, Any], sites: Sequence[Site], reduce: Reduce):  # type: ignore[no-untyped-def]
        missing = [s.name for s in sites if s.name not in names]
        if missing:
            raise UserError(f"transformer-lens has no hook point {missing[0]} for "
                            f"{handle.name}; use --backend native")
        out: dict[tuple[str, int], Any] = {}

        def hook_for(site: Site):  # type: ignore[no-untyped-def]
            def read(x: Any, hook: Any) -> None:
                out[(site.kind, site.layer)] = reduce(x.detach())
            return read

        with torch.inference_mode():
            bridge.run_with_hooks(enc["input_ids"], attention_mask=enc["attention_mask"],
                                  fwd_hooks=[(s.name, hook_for(s)) for s in sites],
                                  return_type=None)
        return out

    return capture


def _nnsight(handle: Any) -> Capture:
    import torch

    with warnings.catch_warnings():  # LanguageModel is deprecated in favour of TransformersModel
        warnings.simplefilter("ignore")
        from nnsight import LanguageModel

        lm = LanguageModel(handle.base_model, tokenizer=handle.tokenizer)
    family = handle.family
    layers = get_module(lm, family.layers)

    def capture(enc: dict[str, Any], sites: Sequence[Site], reduce: Reduce):  # type: ignore[no-untyped-def]
        for s in sites:
            if s.kind == "resid_mid" and family.parallel:
                raise UserError(f"{s.name}: parallel attention+MLP blocks have no resid_mid")
        # nnsight reads module values in the order the forward pass produces them
        todo = sorted(sites, key=lambda s: (s.layer, _ORDER[s.kind]))
        saved: dict[tuple[str, int], Any] = {}
        with torch.inference_mode(), lm.trace(_forward_kwargs(enc)):
            pre: dict[int, Any] = {}
            for s in todo:
                layer = layers[s.layer]
                needs_pre = any(t.layer == s.layer and t.kind in ("resid_pre", "resid_mid")
                                for t in todo)
                if needs_pre and s.layer not in pre:
                    args, kwargs = layer.inputs
                    pre[s.layer] = args[0] if args else kwargs["hidden_states"]
                if s.kind == "resid_pre":
                    x = pre[s.layer]
                elif s.kind in ("attn_out", "resid_mid"):
                    x = _first(get_module(layer, family.attn_out).output)
                    if s.kind == "resid_mid":
                        x = pre[s.layer] + x
                elif s.kind == "mlp_out":
                    x = _first(get_module(layer, family.mlp_out).output)
                else:
                    x = _first(layer.output)
                saved[(s.kind, s.layer)] = reduce(x).save()
        return {k: v.detach() for k, v in saved.items()}

    return capture


def _first(value: Any) -> Any:
    return value[0] if isinstance(value, tuple) else value
