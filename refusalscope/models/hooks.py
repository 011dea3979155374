"""Install native PyTorch hooks at named sites; always remove them.

A hook function receives the activation at a site, `Float[Tensor, "batch pos d_model"]`, and the
parsed `Site`; it returns a replacement tensor of the same shape, or None to leave it unchanged
(a read-only probe). Interventions (steering, ablation) are such functions.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from typing import Any

from refusalscope.errors import UserError
from refusalscope.models.sites import Family, Site, get_module, parse_site

HookFn = Callable[[Any, Site], Any]


def _first(value: Any) -> Any:
    return value[0] if isinstance(value, tuple) else value


def _replace_first(value: Any, new: Any) -> Any:
    return (new, *value[1:]) if isinstance(value, tuple) else new


def _pre_hook(site: Site, fn: HookFn):  # type: ignore[no-untyped-def]
    """Forward pre-hook reading/replacing the layer's `hidden_states` input."""

    def hook(module, args, kwargs):  # type: ignore[no-untyped-def]
        if args:
            new = fn(args[0], site)
            return None if new is None else ((new, *args[1:]), kwargs)
        new = fn(kwargs["hidden_states"], site)
        return None if new is None else (args, {**kwargs, "hidden_states": new})

    return hook


def _out_hook(site: Site, fn: HookFn):  # type: ignore[no-untyped-def]
    """Forward hook reading/replacing a module's (first) output."""

    def hook(module, args, output):  # type: ignore[no-untyped-def]
        new = fn(_first(output), site)
        return None if new is None else _replace_first(output, new)

    return hook


def _mid_hooks(layer, family: Family, site: Site, fn: HookFn) -> list:  # type: ignore[no-untyped-def]
    """resid_mid = residual entering the block + attention's contribution.

    The residual is captured at the attention-side norm's input; replacing resid_mid by `new`
    is done by adding `new - mid` to attention's contribution, which is exactly what the
    residual stream then carries.
    """
    state: dict[str, Any] = {}

    def capture(module, args, kwargs):  # type: ignore[no-untyped-def]
        state["resid"] = args[0] if args else kwargs["hidden_states"]

    def apply(module, args, output):  # type: ignore[no-untyped-def]
        out = _first(output)
        mid = state.pop("resid") + out
        new = fn(mid, site)
        return None if new is None else _replace_first(output, out + (new - mid))

    norm = get_module(layer, family.attn_in_norm)
    attn = get_module(layer, family.attn_out)
    return [norm.register_forward_pre_hook(capture, with_kwargs=True),
            attn.register_forward_hook(apply)]


def _install(root, family: Family, site: Site, fn: HookFn) -> list:  # type: ignore[no-untyped-def]
    layer = get_module(root, family.layers)[site.layer]
    if site.kind == "resid_pre":
        return [layer.register_forward_pre_hook(_pre_hook(site, fn), with_kwargs=True)]
    if site.kind == "resid_post":
        return [layer.register_forward_hook(_out_hook(site, fn))]
    if site.kind == "attn_out":
        return [get_module(layer, family.attn_out).register_forward_hook(_out_hook(site, fn))]
    if site.kind == "mlp_out":
        return [get_module(layer, family.mlp_out).register_forward_hook(_out_hook(site, fn))]
    if family.parallel:
        raise UserError(f"{site.name}: parallel attention+MLP blocks have no resid_mid")
    return _mid_hooks(layer, family, site, fn)


@contextmanager
def installed_hooks(root, family: Family, n_layers: int,  # type: ignore[no-untyped-def]
                    hooks: Sequence[tuple[str, HookFn]]) -> Iterator[None]:
    """Install `(site_name, fn)` hooks on the modules under `root`; remove them on exit.

    Example:
        with installed_hooks(model, family, 24, [("blocks.3.hook_resid_post", add(v, 4.0))]):
            model.generate(...)
    """
    handles: list = []
    try:
        for name, fn in hooks:
            handles += _install(root, family, parse_site(name, n_layers), fn)
        yield
    finally:
        for h in handles:
            h.remove()
