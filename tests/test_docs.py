"""The docs cannot drift from the code.

Every `refusalscope ...` command line inside a fenced code block of README.md and docs/*.md is
parsed the way a shell would (comments, `\\` continuations, `VAR=value` lines of the same block,
pipes and `&&`), resolved in the real click tree (`typer.main.get_command`), and each option and
argument is converted by click with its declared type, without running the command. Old option
spellings that only survive behind a deprecation note fail too. Every relative link in the docs
must name a file that exists, and docs/spec.md must equal what `scripts/spec_reference.py`
writes from the code today.

Doc conventions the parser understands (so placeholders stay readable):
`[--flag VALUE]` marks an optional part (checked as if given), `a|b` in one word lists
alternatives (each is checked), `...` and `RUN...` continue a list.
"""

from __future__ import annotations

import re
import shlex
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
DOCS = [ROOT / "README.md", *sorted((ROOT / "docs").glob("*.md"))]
_FENCE = re.compile(r"^(?P<indent> *)```(?P<lang>[^\n`]*)\n(?P<body>.*?)^(?P=indent)```", re.M | re.S)
_ASSIGN = re.compile(r"^([A-Za-z_][A-Za-z0-9_]*)=(.*)$")
_SEPARATORS = {"|", "||", "&&", ";", "&"}


@dataclass(frozen=True)
class DocCommand:
    """One `refusalscope` invocation written in a doc: where, and its argv after the program."""

    path: Path
    line: int  # 1-based line of the command's first physical line
    argv: tuple[str, ...]

    def where(self) -> str:
        return f"{self.path.relative_to(ROOT)}:{self.line}"


def code_blocks(text: str) -> list[tuple[str, str, int]]:
    """(language, body, line of the body's first line) of every fenced block."""
    out = []
    for m in _FENCE.finditer(text):
        first = text.count("\n", 0, m.start("body")) + 1
        out.append((m.group("lang").strip(), m.group("body"), first))
    return out


def logical_lines(body: str, first: int) -> list[tuple[int, str]]:
    """Physical lines joined at trailing backslashes: (line number, text)."""
    out: list[tuple[int, str]] = []
    buf, start = "", first
    for i, raw in enumerate(body.splitlines()):
        if not buf:
            start = first + i
        if raw.rstrip().endswith("\\"):
            buf += raw.rstrip()[:-1] + " "
            continue
        out.append((start, buf + raw))
        buf = ""
    if buf:
        out.append((start, buf))
    return out


def _strip_comment(line: str) -> str:
    """`line` without a shell comment: `#` at a word's start, outside quotes."""
    quote = ""
    for i, ch in enumerate(line):
        if quote:
            quote = "" if ch == quote else quote
        elif ch in "'\"":
            quote = ch
        elif ch == "#" and (i == 0 or line[i - 1].isspace()):
            return line[:i]
    return line


def _words(line: str) -> list[str] | None:
    """Shell words of `line` (comments dropped), or None for a line that is not shell."""
    try:
        return shlex.split(_strip_comment(line))
    except ValueError:
        return None


def _substitute(word: str, env: dict[str, str]) -> str:
    return re.sub(r"\$\{?([A-Za-z_][A-Za-z0-9_]*)\}?",
                  lambda m: env.get(m.group(1), m.group(0)), word)


def _program_end(seg: list[str]) -> int | None:
    """Index just past the program words (`refusalscope`, `.venv/bin/refusalscope`,
    `python -m refusalscope`) in a command segment, or None if it runs something else."""
    i = 0
    while i < len(seg) and _ASSIGN.match(seg[i]):  # FOO=1 refusalscope ...
        i += 1
    if i < len(seg) and (seg[i] == "refusalscope" or seg[i].endswith("/refusalscope")):
        return i + 1
    if i < len(seg) and seg[i].split("/")[-1].startswith("python") \
            and seg[i + 1:i + 3] == ["-m", "refusalscope"]:
        return i + 3
    return None


_CAPTURE = re.compile(r"^\s*([A-Za-z_][A-Za-z0-9_]*)=\$\((.*)\)\s*$")


def split_capture(line: str) -> tuple[str, str] | None:
    """`VAR=$(command ...)` (a comment after it allowed) -> (VAR, "command ..."), else None."""
    m = _CAPTURE.match(_strip_comment(line))
    return (m.group(1), m.group(2)) if m else None


def block_commands(path: Path, body: str, first: int) -> list[DocCommand]:
    """The refusalscope invocations of one shell block, with the block's variables filled in
    (a captured `VAR=$(refusalscope ...)` stands for a run folder afterwards)."""
    env: dict[str, str] = {}
    out = []
    for line_no, line in logical_lines(body, first):
        if cap := split_capture(line):
            env[cap[0]] = f"runs/{cap[0].lower()}"
            line = cap[1]
        words = _words(line)
        if not words:
            continue
        segments: list[list[str]] = [[]]
        for w in words:
            if w in _SEPARATORS:
                segments.append([])
            elif w.endswith(";") and len(w) > 1:
                segments[-1].append(w[:-1])
                segments.append([])
            else:
                segments[-1].append(w)
        for seg in segments:
            seg = [_substitute(w, env) for w in seg]
            if len(seg) == 1 and (m := _ASSIGN.match(seg[0])):
                env[m.group(1)] = m.group(2)
                continue
            if seg and seg[0] == "export":
                for w in seg[1:]:
                    if m := _ASSIGN.match(w):
                        env[m.group(1)] = m.group(2)
                continue
            end = _program_end(seg)
            if end is not None:
                out.append(DocCommand(path, line_no, tuple(seg[end:])))
    return out


def doc_commands() -> list[DocCommand]:
    """Every refusalscope invocation in a shell (or unlabelled) code block of the docs."""
    out = []
    for path in DOCS:
        for lang, body, first in code_blocks(path.read_text(encoding="utf-8")):
            if lang in ("", "bash", "sh", "shell", "console"):
                out.extend(block_commands(path, body, first))
    return out


def variants(argv: tuple[str, ...]) -> list[list[str]]:
    """The concrete argument lists a doc line stands for: optional brackets kept (as given),
    `...` dropped, and each `a|b` alternative checked in turn (the others at their first)."""
    words = []
    for w in argv:
        w = w.removeprefix("[").removesuffix("]")
        if w.endswith("..."):
            w = w[:-3]
        if w:
            words.append(w)
    alts = [w.split("|") if "|" in w and "://" not in w else [w] for w in words]
    base = [a[0] for a in alts]
    out = [base]
    for i, a in enumerate(alts):
        for choice in a[1:]:
            out.append([*base[:i], choice, *base[i + 1:]])
    return out


def _root():  # type: ignore[no-untyped-def]
    import typer

    from refusalscope.cli.app import app

    return typer.main.get_command(app)


def _exit_types() -> tuple[type[BaseException], ...]:
    import typer

    out: list[type[BaseException]] = [typer.Exit]
    try:
        from typer._click.exceptions import Exit as VendoredExit  # type: ignore[attr-defined]

        out.append(VendoredExit)
    except ImportError:
        pass
    return tuple(out)


def _renamed() -> dict[str, dict[str, str]]:
    try:
        from refusalscope.cli._common import RENAMED
    except ImportError:
        return {}
    return RENAMED


def _click_exceptions():  # type: ignore[no-untyped-def]
    """The exception module of the click that typer runs on (typer >= 0.2x vendors its own)."""
    try:
        from typer._click import exceptions
    except ImportError:  # an older typer on plain click
        from click import exceptions
    return exceptions


def check_argv(args: list[str]) -> str | None:
    """None if `refusalscope ARGS` parses (command path, options, types); else why not.

    Nothing runs: click builds each context (parsing and type conversion) and stops there.
    `--help` is fine anywhere; required options may then be left out.
    """
    cex = _click_exceptions()
    help_given = "--help" in args
    args = [a for a in args if a != "--help"]
    cmd, ctx, path = _root(), None, []
    renamed = _renamed()
    while True:
        old = renamed.get(" ".join(path), {})
        for a in args:
            if a.partition("=")[0] in old:
                return f"`{a.partition('=')[0]}` is a deprecated spelling: use {old[a.partition('=')[0]]}"
        try:
            ctx = cmd.make_context(path[-1] if path else "refusalscope", list(args), parent=ctx)
        except _exit_types():
            return None
        except cex.MissingParameter as e:
            if help_given:
                return None
            return f"{' '.join(path)}: {e.format_message()}"
        except cex.ClickException as e:
            if isinstance(e, cex.NoArgsIsHelpError):
                return None if help_given else f"{' '.join(path)}: a subcommand or argument is missing"
            return f"{' '.join(path) or 'refusalscope'}: {e.format_message()}"
        if not hasattr(cmd, "commands"):
            return None if not ctx.args else f"{' '.join(path)}: unexpected {ctx.args}"
        rest = [*getattr(ctx, "_protected_args", getattr(ctx, "protected_args", [])), *ctx.args]
        if not rest:
            if help_given or getattr(cmd, "invoke_without_command", False):
                return None
            return f"{' '.join(path) or 'refusalscope'}: a subcommand is missing"
        try:
            name, sub, args = cmd.resolve_command(ctx, rest)
        except cex.ClickException as e:
            return f"{' '.join(path) or 'refusalscope'}: {e.format_message()}"
        cmd, path = sub, [*path, name]


# --- tests ----------------------------------------------------------------------------------


def test_docs_have_commands() -> None:
    """The parser finds the README's commands (a broken regex would make the next test vacuous)."""
    found = doc_commands()
    readme = [c for c in found if c.path.name == "README.md"]
    assert len(readme) >= 20, [c.where() for c in readme]
    paths = {c.argv[0] for c in found if c.argv}
    assert {"generate", "score", "attack", "probe", "study", "fit", "defend"} <= paths


def test_every_doc_command_parses() -> None:
    bad = []
    for c in doc_commands():
        for args in variants(c.argv):
            why = check_argv(args)
            if why:
                bad.append(f"{c.where()}: refusalscope {' '.join(args)}\n    -> {why}")
    assert not bad, "\n".join(bad)


@pytest.mark.parametrize("args, fragment", [
    (["generate", "--model", "m", "--nope", "1"], "No such option"),
    (["generate", "--n", "many"], "valid integer"),
    (["study", "frobnicate", "x"], "No such command"),
    (["attack"], "subcommand"),
    (["score", "drift", "A"], "Missing argument"),
])
def test_checker_rejects_what_click_rejects(args: list[str], fragment: str) -> None:
    why = check_argv(args)
    assert why is not None and fragment.lower() in why.lower(), why


def test_checker_accepts_doc_conventions() -> None:
    cmd = DocCommand(ROOT / "README.md", 1, ("study", "run", "quickstart",
                                             "[--executor", "local|ray]"))
    vs = variants(cmd.argv)
    assert vs == [["study", "run", "quickstart", "--executor", "local"],
                  ["study", "run", "quickstart", "--executor", "ray"]]
    assert all(check_argv(v) is None for v in vs)
    assert check_argv(["score", "some/run", "--scorer", "ensemble"]) is None  # default subcommand
    assert check_argv(["probe", "--model", "m", "--n", "8"]) is None  # group run on its own
    assert check_argv(["generate", "--help"]) is None


def test_block_parsing_follows_the_shell() -> None:
    body = ("M=qwen2.5-coder-0.5b  # a comment\n"
            "refusalscope generate -m $M --n 8 \\\n    --split eval | tail -n 1\n"
            "echo done && .venv/bin/refusalscope score ${M}-run\n"
            "RUN=$(refusalscope attack lora -m $M --steps 4)   # prints the run\n"
            "refusalscope generate -m $M --adapter $RUN\n")
    cmds = block_commands(ROOT / "README.md", body, 10)
    assert [c.argv for c in cmds] == [
        ("generate", "-m", "qwen2.5-coder-0.5b", "--n", "8", "--split", "eval"),
        ("score", "qwen2.5-coder-0.5b-run"),
        ("attack", "lora", "-m", "qwen2.5-coder-0.5b", "--steps", "4"),
        ("generate", "-m", "qwen2.5-coder-0.5b", "--adapter", "runs/run")]
    assert [c.line for c in cmds] == [11, 13, 14, 15]


_LINK = re.compile(r"!?\[[^\]]*\]\(([^)\s]+)(?:\s+\"[^\"]*\")?\)")


def test_relative_links_exist() -> None:
    bad = []
    for path in DOCS:
        text = path.read_text(encoding="utf-8")
        text = _FENCE.sub("", text)  # links inside code are code
        for m in _LINK.finditer(text):
            target = m.group(1)
            if re.match(r"^[a-z][a-z0-9+.-]*:", target) or target.startswith("#"):
                continue
            file = target.split("#", 1)[0]
            if not (path.parent / file).exists():
                bad.append(f"{path.relative_to(ROOT)}: {target}")
    assert not bad, bad


def test_spec_reference_is_current() -> None:
    """docs/spec.md is what scripts/spec_reference.py writes from the code now."""
    out = subprocess.run([sys.executable, str(ROOT / "scripts" / "spec_reference.py"), "--print"],
                         capture_output=True, text=True, check=True, cwd=ROOT)
    current = (ROOT / "docs" / "spec.md").read_text(encoding="utf-8")
    assert out.stdout == current, ("docs/spec.md is stale: run "
                                   "`.venv/bin/python scripts/spec_reference.py`")


def test_readme_opens_with_the_two_commands() -> None:
    """The first two commands a reader meets are the main job and the tests (`.ci/run` calls
    the second); they stay exactly these."""
    lang, body, _ = code_blocks((ROOT / "README.md").read_text(encoding="utf-8"))[0]
    assert body.splitlines()[:2] == [
        "bash scripts/quickstart.sh   # set up .venv, pull models + data, run the `quickstart` "
        "study (LoRA attack on 2 models, 3 model sizes, RRR/RD/CE) and write its report",
        "bash scripts/test.sh         # set up .venv and run the whole test suite (unit tests on "
        "tiny models + slow end-to-end tests)"]
    assert "scripts/test.sh" in (ROOT / ".ci" / "run").read_text()


def test_attacks_doc_names_the_result_keys() -> None:
    """docs/attacks.md's result.json table lists exactly `RESULT_KEYS` (in order), its text
    names every field of a rates block and of a per-request row, and nowhere names a flat key
    of the old per-attack schema (`evaluate.legacy_rates`), which is not part of the schema."""
    from refusalscope.attacks.base import RESULT_KEYS, per_request
    from refusalscope.attacks.evaluate import legacy_rates
    from refusalscope.scoring.score import asr_summary

    text = (ROOT / "docs" / "attacks.md").read_text(encoding="utf-8")
    assert "\n## result.json\n" in text
    section = text.split("\n## result.json\n", 1)[1].split("\n## ", 1)[0]
    table = re.findall(r"^\| `([a-z_]+)` \|", section, re.M)
    assert tuple(table) == RESULT_KEYS
    named = set(re.findall(r"`([A-Za-z_][A-Za-z0-9_]*)`", section))
    rates = asr_summary(["complied", "refused"], n_boot=10)
    row = per_request([{"id": "q0", "split": "eval", "variant": "baseline", "outcome": "refused"}])
    fields = {*rates, *rates["not_refused"], *rates["outcomes"], *row[0]}
    assert fields <= named, sorted(fields - named)
    groups = {"requests": {"attacked": rates, "baseline": rates},
              "heldout": {"attacked": rates, "baseline": rates}}
    old = set(legacy_rates(groups)) - set(RESULT_KEYS)
    assert old and not old & set(re.findall(r"`([A-Za-z_][A-Za-z0-9_]*)`", text)), \
        sorted(old & set(re.findall(r"`([A-Za-z_][A-Za-z0-9_]*)`", text)))
