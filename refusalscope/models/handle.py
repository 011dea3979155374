"""One model handle shared by every command: model + tokenizer + chat template + sites + hooks.

Family differences live in `sites.FAMILIES` (a table), not in subclasses. Runtime settings
(device, dtype) are a separate `RuntimeOptions` that is never saved with a run's config.
"""

from __future__ import annotations

import logging
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from refusalscope.errors import UserError
from refusalscope.models.hooks import HookFn, installed_hooks
from refusalscope.models.sites import Family, family_for, get_module

log = logging.getLogger(__name__)

# Used only for models without a chat template (base models); announced with a warning.
FALLBACK_TEMPLATE = "### Instruction:\n{prompt}\n\n### Response:\n"
FALLBACK_TEMPLATE_WITH_SYSTEM = "{system}\n\n" + FALLBACK_TEMPLATE


@dataclass(frozen=True)
class RuntimeOptions:
    """How to run, not what to compute: never saved in a run's config."""

    device: str = "auto"  # auto | cpu | cuda | cuda:N | mps
    dtype: str = "auto"  # auto (bf16 on CUDA, fp32 on CPU) | float32 | bfloat16 | float16
    trust_remote_code: bool = False

    def __post_init__(self) -> None:
        self.resolved_dtype()  # a bad or absent --device / --dtype fails before any work

    def resolved_device(self) -> str:
        """The device to load on; a CUDA device that is not there is a `UserError`, not a
        torch traceback deep inside loading."""
        import re

        import torch

        if self.device == "auto":
            return "cuda" if torch.cuda.is_available() else "cpu"
        m = re.fullmatch(r"(cpu|mps|cuda)(?::(\d+))?", self.device)
        if m is None or (m.group(2) is not None and m.group(1) != "cuda"):
            raise UserError(f"unknown --device {self.device!r}: auto, cpu, cuda, cuda:N or mps")
        if m.group(1) == "cuda":
            if not torch.cuda.is_available():
                raise UserError(f"--device {self.device}: torch sees no CUDA device here "
                                f"(torch {torch.__version__}); use --device cpu or auto")
            if m.group(2) is not None and int(m.group(2)) >= torch.cuda.device_count():
                raise UserError(f"--device {self.device}: only {torch.cuda.device_count()} "
                                "CUDA device(s) visible")
        return self.device

    def resolved_dtype(self):  # type: ignore[no-untyped-def]
        import torch

        names = {"float32": torch.float32, "bfloat16": torch.bfloat16, "float16": torch.float16}
        if self.dtype == "auto":
            return torch.bfloat16 if self.resolved_device().startswith("cuda") else torch.float32
        if self.dtype not in names:
            raise UserError(f"unknown dtype {self.dtype!r}: one of auto, {', '.join(names)}")
        return names[self.dtype]


class ModelHandle:
    """A loaded causal LM with its tokenizer, chat formatting and named activation sites."""

    def __init__(self, model: Any, tokenizer: Any, name: str, *, source: str | None = None,
                 adapter: str | None = None):
        self.model = model
        self.tokenizer = tokenizer
        self.name = name
        self.source = source
        self.adapter = adapter
        base = model.get_base_model() if hasattr(model, "get_base_model") else model
        self.base_model = base
        self.config = base.config
        self.family: Family = family_for(self.config.model_type)
        self.layers = get_module(base, self.family.layers)
        self.n_layers = len(self.layers)
        text_cfg = getattr(self.config, "text_config", None) or self.config
        self.d_model: int = text_cfg.hidden_size
        _prepare_tokenizer(tokenizer, base)
        if not self.has_chat_template:
            log.warning("%s has no chat template (a base model?): prompts are wrapped in the "
                        "fallback format '### Instruction: ... ### Response:'", name)

    # -- loading -----------------------------------------------------------------------------
    @classmethod
    def load(cls, spec: str, *, adapter: str | Path | None = None,
             options: RuntimeOptions | None = None) -> ModelHandle:
        """Load a registry name, local folder, `.gguf` file or hub id (see `models.pull.resolve`).

        Example:
            handle = ModelHandle.load("smollm2-135m")
        """
        from refusalscope.models.pull import resolve

        opts = options or RuntimeOptions()
        resolved = resolve(spec, trust_remote_code=opts.trust_remote_code)
        return cls.from_resolved(resolved, adapter=adapter, options=opts)

    @classmethod
    def from_resolved(cls, resolved: Any, *, adapter: str | Path | None = None,
                      options: RuntimeOptions | None = None) -> ModelHandle:
        """Load a `models.pull.ResolvedModel` (for callers that resolved the spec already)."""
        opts = options or RuntimeOptions()
        model, tokenizer = _load_hf(resolved.load_path, opts)
        adapter_dir = None
        if adapter is not None:
            adapter_dir = _adapter_dir(adapter)
            model = _attach_adapter(model, adapter_dir)
        return cls(model, tokenizer, resolved.name, source=resolved.source,
                   adapter=str(adapter_dir) if adapter_dir else None)

    # -- chat formatting -----------------------------------------------------------------------
    @property
    def has_chat_template(self) -> bool:
        return bool(getattr(self.tokenizer, "chat_template", None))

    def format_prompt(self, prompt: str, system: str | None = None) -> str:
        """The text fed to the model for one user turn, ending where the assistant starts."""
        if not self.has_chat_template:
            if system:
                return FALLBACK_TEMPLATE_WITH_SYSTEM.format(system=system, prompt=prompt)
            return FALLBACK_TEMPLATE.format(prompt=prompt)
        messages = [{"role": "user", "content": prompt}]
        if system is not None:
            messages.insert(0, {"role": "system", "content": system})
        return self.tokenizer.apply_chat_template(messages, tokenize=False,
                                                  add_generation_prompt=True)

    # -- hooks ------------------------------------------------------------------------------
    @contextmanager
    def hooks(self, hooks: Sequence[tuple[str, HookFn]]) -> Iterator[None]:
        """Install `(site_name, fn)` hooks for the duration of the block; always removed.

        Example:
            with handle.hooks([("blocks.2.hook_resid_post", lambda x, site: x + v)]):
                logits = handle.model(**batch).logits
        """
        with installed_hooks(self.base_model, self.family, self.n_layers, hooks):
            yield

    @property
    def device(self):  # type: ignore[no-untyped-def]
        return next(self.model.parameters()).device

    def n_params(self) -> int:
        return sum(p.numel() for p in self.base_model.parameters())


def _prepare_tokenizer(tokenizer: Any, model: Any) -> None:
    """Left padding for batched generation; a pad token if the model has none."""
    tokenizer.padding_side = "left"
    if tokenizer.pad_token_id is None:
        tokenizer.pad_token = tokenizer.eos_token
    gen = getattr(model, "generation_config", None)
    if gen is not None and gen.pad_token_id is None:
        gen.pad_token_id = tokenizer.pad_token_id


def _load_hf(load_path: str, opts: RuntimeOptions):  # type: ignore[no-untyped-def]
    """(model, tokenizer) of a folder or hub id; an image-text checkpoint of a family in
    `textonly.TEXT_ONLY` loads as its language model only (see `models.textonly`)."""
    from transformers import AutoConfig, AutoModelForCausalLM, AutoTokenizer
    from transformers.utils import logging as hf_logging

    from refusalscope.models.textonly import TEXT_ONLY, load_text_model

    hf_logging.disable_progress_bar()  # a per-tensor bar on every load is noise for our CLI
    device, dtype = opts.resolved_device(), opts.resolved_dtype()
    trust = opts.trust_remote_code
    try:
        tokenizer = AutoTokenizer.from_pretrained(load_path, trust_remote_code=trust)
        config = AutoConfig.from_pretrained(load_path, trust_remote_code=trust)
        if config.model_type in TEXT_ONLY:
            model = load_text_model(load_path, config, dtype, trust_remote_code=trust)
        else:
            model = AutoModelForCausalLM.from_pretrained(load_path, config=config, dtype=dtype,
                                                         trust_remote_code=trust)
    except OSError as e:
        first = str(e).strip().splitlines()[0] if str(e).strip() else type(e).__name__
        raise UserError(f"could not load model {load_path!r}: {first}") from None
    model.to(device)
    model.eval()
    return model, tokenizer


def _adapter_dir(adapter: str | Path) -> Path:
    """An adapter folder, or a run folder holding one under `adapter/`."""
    p = Path(adapter)
    if (p / "adapter" / "adapter_config.json").is_file():
        return p / "adapter"
    if (p / "adapter_config.json").is_file():
        return p
    raise UserError(f"no peft adapter (adapter_config.json) in {adapter}")


def _attach_adapter(model: Any, adapter_dir: Path) -> Any:
    from peft import PeftModel

    from refusalscope.models.peft_quiet import quiet_peft

    with quiet_peft():
        peft_model = PeftModel.from_pretrained(model, str(adapter_dir))
    peft_model.eval()
    return peft_model
