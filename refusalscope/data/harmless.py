"""The harmless contrast set: everyday instructions written for refusalscope.

No harmless instruction set (Alpaca and the like) can be had offline, so the project ships its
own: ~800 hand-written requests across 33 topics (cooking, programming, maths, travel, ...) and
many forms (questions, imperatives, "write a ...", rewrites with pasted text). They avoid words
that trip refusal heuristics ("attack", "kill", "exploit", ...), because over-refusal is measured
on them and must not be confounded by lexical triggers; their word-length distribution was
written to match the harmful pool (see the build report). Licence: the project's own.
"""

from __future__ import annotations

import hashlib
from importlib import resources

from refusalscope import __version__
from refusalscope.data.parsers import Row

RESOURCE = "harmless.txt"
SOURCE = "refusalscope-harmless"
LICENSE = "Apache-2.0"
PACKAGE = f"refusalscope=={__version__}"


def resource_bytes() -> bytes:
    return resources.files("refusalscope.data").joinpath("resources", RESOURCE).read_bytes()


def resource_sha256() -> str:
    """Hash of the shipped prompt list (recorded in the build report)."""
    return hashlib.sha256(resource_bytes()).hexdigest()


def parse(text: str) -> list[tuple[str, str]]:
    """``(topic, prompt)`` pairs from the resource format: ``## topic`` headers, one prompt a line.

    Lines starting with a single ``#`` are comments. A prompt before any header is an error.
    """
    out: list[tuple[str, str]] = []
    topic: str | None = None
    for n, raw in enumerate(text.splitlines(), start=1):
        line = raw.strip()
        if line.startswith("## "):
            topic = line[3:].strip()
        elif line and not line.startswith("#"):
            if topic is None:
                raise ValueError(f"{RESOURCE} line {n}: prompt before any '## topic' header")
            out.append((topic, line))
    return out


def harmless_rows() -> list[Row]:
    """The harmless prompts as raw rows (same shape as a pulled source), ids ``harmless-0001``...

    Example:
        >>> harmless_rows()[0]["category"]
        'cooking'
    """
    pairs = parse(resource_bytes().decode("utf-8"))
    return [{"id": f"harmless-{i:04d}", "prompt": prompt, "target": None, "source": SOURCE,
             "package": PACKAGE, "license": LICENSE,
             "orig_id": f"{RESOURCE}:{i}", "category": topic}
            for i, (topic, prompt) in enumerate(pairs, start=1)]
