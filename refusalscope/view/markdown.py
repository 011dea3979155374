"""Just enough Markdown to HTML for a study's `report.md`: headings, paragraphs, lists,
pipe tables, block quotes, code spans, bold, links and images.

Everything from the file is HTML-escaped first, so a report can never inject markup; image
sources are kept only when they are relative paths inside the report folder (`images` gets
each one, so the site can copy it beside the page).
"""

from __future__ import annotations

import html
import re

_IMG = re.compile(r"!\[([^\]]*)\]\(([^)\s]+)\)")
_LINK = re.compile(r"\[([^\]]+)\]\((https?://[^)\s]+)\)")
_BOLD = re.compile(r"\*\*(.+?)\*\*")
_CODE = re.compile(r"`([^`]+)`")
_SAFE_SRC = re.compile(r"[A-Za-z0-9_][A-Za-z0-9_./-]*\.(png|jpg|jpeg|svg)")


def _inline(text: str, prefix: str, images: list[str]) -> str:
    """One line of inline markup, escaped; code spans are kept verbatim (escaped)."""
    parts = re.split(r"(`[^`]+`)", text)
    out = []
    for part in parts:
        if _CODE.fullmatch(part):
            out.append(f"<code>{html.escape(part[1:-1])}</code>")
            continue
        s = html.escape(part, quote=True)

        def img(m: re.Match[str]) -> str:
            src = html.unescape(m.group(2))
            if not _SAFE_SRC.fullmatch(src) or ".." in src:
                return m.group(0)
            images.append(src)
            return (f'<img alt="{m.group(1)}" src="{html.escape(prefix + src, quote=True)}" '
                    'loading="lazy">')

        s = _IMG.sub(img, s)
        s = _LINK.sub(lambda m: f'<a href="{m.group(2)}" rel="noreferrer">{m.group(1)}</a>', s)
        s = _BOLD.sub(r"<strong>\1</strong>", s)
        out.append(s)
    return "".join(out)


def _table(lines: list[str], prefix: str, images: list[str]) -> str:
    def cells(line: str) -> list[str]:
        return [c.strip() for c in line.strip().strip("|").split("|")]

    head = "".join(f"<th>{_inline(c, prefix, images)}</th>" for c in cells(lines[0]))
    body = "".join("<tr>" + "".join(f"<td>{_inline(c, prefix, images)}</td>" for c in cells(ln))
                   + "</tr>" for ln in lines[2:])
    return f'<table class="md"><thead><tr>{head}</tr></thead><tbody>{body}</tbody></table>'


def to_html(text: str, prefix: str = "") -> tuple[str, list[str]]:
    """(HTML, relative image paths) of a Markdown text; `prefix` goes before image sources."""
    images: list[str] = []
    out: list[str] = []
    lines = text.splitlines()
    i = 0
    while i < len(lines):
        line = lines[i]
        if not line.strip():
            i += 1
            continue
        if m := re.match(r"(#{1,6})\s+(.*)", line):
            n = len(m.group(1))
            out.append(f"<h{n}>{_inline(m.group(2), prefix, images)}</h{n}>")
            i += 1
            continue
        block = []
        kind = _kind(line)
        while i < len(lines) and lines[i].strip() and _kind(lines[i]) in (kind, "cont"):
            if _kind(lines[i]) == "cont" and kind in ("table", "quote"):
                break
            block.append(lines[i])
            i += 1
            if kind == "p" and i < len(lines) and _kind(lines[i]) not in ("p", "cont"):
                break
        out.append(_block(kind, block, prefix, images))
    return "\n".join(out), images


def _kind(line: str) -> str:
    s = line.lstrip()
    if s.startswith("|"):
        return "table"
    if s.startswith(">"):
        return "quote"
    if re.match(r"[-*]\s", s):
        return "ul"
    if re.match(r"\d+\.\s", s):
        return "ol"
    if line.startswith("  ") or line.startswith("\t"):
        return "cont"
    return "p"


def _block(kind: str, block: list[str], prefix: str, images: list[str]) -> str:
    if kind == "table" and len(block) >= 2:
        return _table(block, prefix, images)
    if kind == "quote":
        body = " ".join(ln.lstrip()[1:].strip() for ln in block)
        return f"<blockquote>{_inline(body, prefix, images)}</blockquote>"
    if kind in ("ul", "ol"):
        items: list[str] = []
        for ln in block:
            if _kind(ln) == "cont" and items:
                items[-1] += " " + ln.strip()
            else:
                items.append(re.sub(r"^\s*(?:[-*]|\d+\.)\s+", "", ln))
        lis = "".join(f"<li>{_inline(x, prefix, images)}</li>" for x in items)
        return f"<{kind}>{lis}</{kind}>"
    return f"<p>{_inline(' '.join(ln.strip() for ln in block), prefix, images)}</p>"
