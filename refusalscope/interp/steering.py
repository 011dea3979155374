"""Steering and ablation as composable `(site_name, fn)` hooks, weight orthogonalisation, and
`SteerSpec`, the string form `generate --steer` takes.

Hooks plug into anything that installs `handle.hooks(...)`: `generate_rows(interventions=...)`,
GCG, probes. Lists of hooks compose by concatenation.

Spec strings (`SteerSpec.parse`):

* ``ablate:DIRS.h5`` — project the selected direction out of the residual stream at every layer
  and position (resid_pre, resid_mid and resid_post of every block).
* ``add:DIRS.h5[:alpha=A][:layers=L|L1,L2|L1-L2|all]`` — add `A` times the selected
  difference-in-means vector (not the unit vector: `alpha=1` adds the mean harmful-harmless
  difference, as Arditi et al. do) at the file's site of each listed layer, every position.
  Defaults: alpha=1, layers = the selected layer.
* ``:sha256=HEX`` (added by `resolve`, as `generate` saves it) pins the file's content.
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from dataclasses import asdict, dataclass, replace
from pathlib import Path
from typing import Any

from refusalscope.errors import UserError
from refusalscope.models.hooks import HookFn
from refusalscope.models.sites import site_name

# model_type -> (attention output projection, MLP output projection) inside a decoder layer:
# the linears whose outputs are added unchanged to the residual stream. Families whose writes
# pass through a norm (Gemma 2/3 sandwich norms) are not listed: `orthogonalize` refuses them.
# Phi-1/2's parallel block (x + dense(attn) + fc2(mlp), both with biases) qualifies: with no
# write along r the stream never carries r, which is what the parallel hook ablation
# (resid_pre and resid_post of every block) leaves too.
WRITERS: dict[str, tuple[str, str]] = {
    "llama": ("self_attn.o_proj", "mlp.down_proj"),
    "mistral": ("self_attn.o_proj", "mlp.down_proj"),
    "ministral3": ("self_attn.o_proj", "mlp.down_proj"),
    "qwen2": ("self_attn.o_proj", "mlp.down_proj"),
    "qwen3": ("self_attn.o_proj", "mlp.down_proj"),
    "phi3": ("self_attn.o_proj", "mlp.down_proj"),
    "phi": ("self_attn.dense", "mlp.fc2"),
}


def _like(v: Any, x: Any) -> Any:
    return v.to(device=x.device, dtype=x.dtype)


def add(direction: Any, alpha: float) -> HookFn:
    """Hook fn adding `alpha * direction` (`(d_model,)`) at every position.

    Example:
        with handle.hooks([("blocks.12.hook_resid_pre", add(v, 4.0))]): ...
    """
    v = direction.detach().flatten().double() * float(alpha)

    def fn(x: Any, site: Any) -> Any:
        return x + _like(v, x)

    return fn


def ablate(direction: Any) -> HookFn:
    """Hook fn projecting `direction` out: `x - (x . r) r`, r the unit direction.

    Computed in float32 at least, so the remaining projection is at rounding level.
    """
    r = direction.detach().flatten().double()
    r = r / r.norm().clamp_min(1e-12)

    def fn(x: Any, site: Any) -> Any:
        import torch

        work = torch.promote_types(x.dtype, torch.float32)
        rr = r.to(device=x.device, dtype=work)
        xw = x.to(work)
        return (xw - (xw @ rr).unsqueeze(-1) * rr).to(x.dtype)

    return fn


def add_hooks(direction: Any, alpha: float, layers: Sequence[int], *,
              site: str = "resid_pre") -> list[tuple[str, HookFn]]:
    """`add(direction, alpha)` at `site` of each layer in `layers`."""
    fn = add(direction, alpha)
    return [(site_name(layer, site), fn) for layer in layers]


def ablate_hooks(direction: Any, n_layers: int, *,
                 parallel: bool = False) -> list[tuple[str, HookFn]]:
    """`ablate(direction)` at resid_pre, resid_mid and resid_post of every layer.

    `parallel=True` (blocks without resid_mid) skips resid_mid.
    """
    fn = ablate(direction)
    kinds = ("resid_pre", "resid_post") if parallel else ("resid_pre", "resid_mid", "resid_post")
    return [(site_name(layer, k), fn) for layer in range(n_layers) for k in kinds]


def orthogonalize(handle: Any, direction: Any) -> None:
    """Bake the ablation into the weights, in place: embedding rows and every attention-out and
    MLP-out matrix (and bias) lose their component along the unit direction.

    With no write having a component along r, the residual stream never carries one, so the
    result equals hook ablation (`ablate_hooks`). A tied output embedding is untied first (the
    unembedding keeps its weights).
    """
    import torch

    mtype = handle.config.model_type
    if mtype not in WRITERS:
        raise UserError(f"orthogonalize supports {', '.join(sorted(WRITERS))}; not {mtype!r} "
                        "(its residual writes pass through a norm or are parallel); use hook "
                        "ablation (generate --steer ablate:FILE) instead")
    if handle.adapter:
        raise UserError("orthogonalize a model without an adapter (merge it into a folder first)")
    from refusalscope.models.sites import get_module

    model = handle.base_model
    emb = model.get_input_embeddings()
    out = model.get_output_embeddings()
    if out is not None and out.weight is emb.weight:
        out.weight = torch.nn.Parameter(emb.weight.detach().clone())
        model.config.tie_word_embeddings = False
        text_cfg = getattr(model.config, "text_config", None)
        if text_cfg is not None:
            text_cfg.tie_word_embeddings = False
    with torch.no_grad():
        r = direction.detach().flatten().to(torch.float64)
        r = r / r.norm().clamp_min(1e-12)
        w = emb.weight  # (vocab, d): rows are written to the stream
        rr = r.to(w.device, torch.float64)
        w.copy_((w.double() - (w.double() @ rr).unsqueeze(1) * rr).to(w.dtype))
        for layer in handle.layers:
            for path in WRITERS[mtype]:
                lin = get_module(layer, path)  # weight (d, in): columns live in the stream
                wd = lin.weight.double()
                lin.weight.copy_((wd - torch.outer(rr, rr @ wd)).to(lin.weight.dtype))
                if lin.bias is not None:
                    b = lin.bias.double()
                    lin.bias.copy_((b - (b @ rr) * rr).to(lin.bias.dtype))


# -- spec ------------------------------------------------------------------------------------
@dataclass(frozen=True)
class SteerSpec:
    """One intervention from a directions file; `sha256` pins the file once resolved."""

    mode: str  # ablate | add
    path: str
    alpha: float = 1.0
    layers: tuple[int, ...] | None = None  # add: None = the selected layer
    sha256: str | None = None

    def __post_init__(self) -> None:
        if self.mode not in ("ablate", "add"):
            raise UserError(f"steer spec mode {self.mode!r}: use ablate:FILE or add:FILE[:alpha=A]")
        if not self.path:
            raise UserError("steer spec needs a directions file: ablate:DIRS.h5 or add:DIRS.h5")
        if self.mode == "ablate" and (self.alpha != 1.0 or self.layers is not None):
            raise UserError("ablate takes no alpha or layers (it acts at every layer)")

    @classmethod
    def parse(cls, text: str, n_layers: int | None = None) -> SteerSpec:
        """Parse `ablate:FILE` / `add:FILE:alpha=A:layers=...` (see the module docstring)."""
        parts = text.strip().split(":")
        if len(parts) < 2 or not parts[1]:
            raise UserError(f"steer spec {text!r} has no directions file: "
                            "use ablate:DIRS.h5 or add:DIRS.h5[:alpha=A][:layers=L]")
        kw: dict[str, Any] = {}
        for opt in parts[2:]:
            key, eq, val = opt.partition("=")
            if not eq or key not in ("alpha", "layers", "sha256"):
                raise UserError(f"steer spec option {opt!r}: use alpha=A or layers=L|L1-L2|all")
            if key == "sha256":
                kw[key] = val
                continue
            try:
                kw[key] = float(val) if key == "alpha" else parse_layers(val, n_layers)
            except ValueError:
                raise UserError(f"steer spec option {opt!r}: not a number") from None
        return cls(mode=parts[0].strip(), path=parts[1], **kw)

    def to_string(self) -> str:
        s = f"{self.mode}:{self.path}"
        if self.mode == "add":
            s += f":alpha={self.alpha:g}"
            if self.layers is not None:
                s += ":layers=" + ",".join(str(i) for i in self.layers)
        return s + (f":sha256={self.sha256}" if self.sha256 else "")

    def to_dict(self) -> dict[str, Any]:
        d = asdict(self)
        d["layers"] = None if self.layers is None else list(self.layers)
        return d

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> SteerSpec:
        d = {k: v for k, v in d.items() if k in cls.__dataclass_fields__}
        if d.get("layers") is not None:
            d["layers"] = tuple(d["layers"])
        return cls(**d)

    def resolve(self) -> SteerSpec:
        """Absolute path and the file's sha256 (raises a UserError if missing)."""
        from refusalscope.fileio import sha256_file

        p = Path(self.path).expanduser()
        if not p.is_file():
            raise UserError(f"steer spec: no directions file at {self.path}")
        return replace(self, path=str(p.resolve()), sha256=sha256_file(p))

    def hooks(self, handle: Any) -> list[tuple[str, HookFn]]:
        """Load the file (checked against `handle`'s model) and build the hooks."""
        import torch

        from refusalscope.fileio import sha256_file
        from refusalscope.interp.directions import load_directions

        if self.sha256 is not None and sha256_file(self.path) != self.sha256:
            raise UserError(f"steer spec: {self.path} changed since the run was configured "
                            "(sha256 differs)")
        d = load_directions(self.path, handle)
        if self.mode == "ablate":
            return ablate_hooks(torch.from_numpy(d.selected_direction()), handle.n_layers,
                                parallel=handle.family.parallel)
        layers = self.layers if self.layers is not None else (d.selected[0],)  # type: ignore[index]
        for layer in layers:
            if not 0 <= layer < handle.n_layers:
                raise UserError(f"steer spec: layer {layer} out of range "
                                f"(model has {handle.n_layers} layers)")
        raw = torch.from_numpy(d.selected_direction() * d.selected_norm())
        return add_hooks(raw, self.alpha, layers, site=d.site)


def pin_spec(text: str | None) -> str | None:
    """A `--steer` spec string with an absolute path and the file's sha256 (None stays None):
    what a run's config records, so a changed directions file is caught when it is used."""
    return None if text is None else SteerSpec.parse(text).resolve().to_string()


def parse_layers(val: str, n_layers: int | None) -> tuple[int, ...]:
    """`L`, `L1,L2`, `L1-L2` (inclusive) or `all` -> layer indices, range-checked if known."""
    if val == "all":
        if n_layers is None:
            raise UserError("layers=all needs the model's layer count; list the layers instead")
        return tuple(range(n_layers))
    out: list[int] = []
    try:
        for part in val.split(","):
            a, dash, b = part.partition("-")
            out += list(range(int(a), int(b) + 1)) if dash else [int(a)]
    except ValueError:
        raise UserError(f"layers {val!r}: use L, L1,L2, L1-L2 or all") from None
    if n_layers is not None:
        bad = [i for i in out if not 0 <= i < n_layers]
        if bad:
            raise UserError(f"layer {bad[0]} out of range (model has {n_layers} layers)")
    return tuple(out)


def save_orthogonalized(handle: Any, out: str | Path, spec_info: dict[str, Any]) -> Path:
    """Save `handle`'s (orthogonalised) model + tokenizer as a folder, with `steer.json`."""
    p = Path(out)
    if p.exists() and any(p.iterdir()):
        raise UserError(f"{p} exists and is not empty; not overwriting")
    p.mkdir(parents=True, exist_ok=True)
    handle.base_model.save_pretrained(p)
    handle.tokenizer.save_pretrained(p)
    (p / "steer.json").write_text(json.dumps(spec_info, indent=2, sort_keys=True) + "\n")
    return p
