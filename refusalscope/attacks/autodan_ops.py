"""AutoDAN's genetic operators on prompt texts: selection, sentence crossover, word mutation.

No language model is involved. The paper (Liu et al., ICLR 2024) diversifies with an LLM
rephraser and AutoDAN-HGA swaps words for WordNet synonyms; here both are replaced by what the
prompt group itself offers: its 128 texts are LLM paraphrases of one prototype, so two words
that appear between the same left and right neighbours in different paraphrases are taken as
substitutes (`substitute_table`). Word replacement (`replace_words`, up to 5 words per
paragraph in every child as in HGA) swaps such words, preferring substitutes that the momentum
word table (`update_word_scores`, HGA's momentum rule) links to low target loss.

Texts are never re-spaced: `sentences` and `words` split a text into pieces that join back to
it exactly, so the operators only change what they mean to change. Every function takes its
randomness from a `random.Random` passed in, so a seeded run reproduces.
"""

from __future__ import annotations

import math
import random
import re
from collections import defaultdict
from collections.abc import Iterable, Sequence

# Words mutation never touches: the request label the templates refer to, and the model/developer
# names filled in when a prompt is rendered (see `autodan.render`).
PROTECTED = frozenset({"PROMPT", "ChatGPT", "chatGPT", "ModelKeeper"})
_STOPWORDS = frozenset("""a an the and or but if of to in on at by for with from as is are was were
be been being it its this that these those you your yours i me my we our he she they them their
his her not no nor so than then too very can will would should could may might must do does did
have has had all any each both few more most other some such only own same just now there here
what which who whom when where why how into onto out over under up down off again once""".split())
_WORD = re.compile(r"([A-Za-z][A-Za-z'\-]*)")
_SENTENCE_END = re.compile(r"(?<=[.!?])\s*")


def sentences(text: str) -> list[str]:
    """Split after each `.`, `!` or `?` (trailing spaces stay with the sentence);
    `"".join(sentences(t)) == t`."""
    out, start = [], 0
    for m in _SENTENCE_END.finditer(text):
        if m.end() > start and m.start() > start:
            out.append(text[start:m.end()])
            start = m.end()
    if start < len(text):
        out.append(text[start:])
    return out


def words(text: str) -> list[str]:
    """Alternating pieces: non-word, word, non-word, ... (odd indices are words);
    `"".join(words(t)) == t`."""
    return _WORD.split(text)


def crossover(a: str, b: str, n_points: int, rng: random.Random) -> tuple[str, str]:
    """Multi-point crossover on sentence positions: `n_points` random cut points split both
    parents into runs; each run of the first child comes from a parent drawn by a fair coin
    (per run, as AutoDAN's reference code does), the second child takes the other parent's run.

    Sentence i of `a` is exchanged with sentence i of `b` (the texts are paraphrases of one
    prototype, so equal positions say roughly the same thing). A longer parent keeps its tail.
    """
    sa, sb = sentences(a), sentences(b)
    n = min(len(sa), len(sb))
    if n < 2 or n_points < 1:
        return a, b
    cuts = sorted(rng.sample(range(1, n), min(n_points, n - 1)))
    ca, cb, last = [], [], 0
    for cut in [*cuts, n]:
        src_a, src_b = (sb, sa) if rng.random() < 0.5 else (sa, sb)
        ca += src_a[last:cut]
        cb += src_b[last:cut]
        last = cut
    return "".join(ca + sa[n:]), "".join(cb + sb[n:])


_PROTECTED_LOWER = frozenset(w.lower() for w in PROTECTED)


def _eligible(word: str) -> bool:
    low = word.lower()
    return (len(word) > 2 and low not in _STOPWORDS
            and low.split("'")[0] not in _PROTECTED_LOWER)


def substitute_table(texts: Iterable[str]) -> dict[str, list[str]]:
    """Words (lower case) -> other words seen between the same two neighbours in `texts`.

    The neighbours are the previous and next words (lower case); a context seen with only one
    word adds nothing. Stopwords, words of under three letters and `PROTECTED` words are left
    out on both sides. Lists are sorted, so the table is the same on every run.
    """
    by_context: dict[tuple[str, str], set[str]] = defaultdict(set)
    for text in texts:
        ws = words(text)[1::2]
        for i in range(1, len(ws) - 1):
            if _eligible(ws[i]):
                by_context[(ws[i - 1].lower(), ws[i + 1].lower())].add(ws[i].lower())
    table: dict[str, set[str]] = defaultdict(set)
    for group in by_context.values():
        if len(group) > 1:
            for w in group:
                table[w] |= group - {w}
    return {w: sorted(s) for w, s in sorted(table.items())}


def update_word_scores(scores: dict[str, float], texts: Sequence[str],
                       fitness: Sequence[float]) -> dict[str, float]:
    """HGA's momentum word table: each eligible word's mean fitness over the `texts` holding it,
    averaged with its previous score (a word seen for the first time takes the new mean).

    `fitness` is higher-is-better (minus the target loss). Returns a new dict, sorted by word.
    """
    seen: dict[str, list[float]] = defaultdict(list)
    for text, f in zip(texts, fitness, strict=True):
        for w in {w.lower() for w in words(text)[1::2] if _eligible(w)}:
            seen[w].append(f)
    out = dict(scores)
    for w, fs in seen.items():
        mean = sum(fs) / len(fs)
        out[w] = (out[w] + mean) / 2 if w in out else mean
    return dict(sorted(out.items()))


def softmax_pick(scores: Sequence[float], rng: random.Random, k: int = 1) -> list[int]:
    """`k` indices drawn with replacement, P(i) = softmax(scores)_i (roulette-wheel selection)."""
    top = max(scores)
    weights = [math.exp(s - top) for s in scores]
    return rng.choices(range(len(scores)), weights=weights, k=k)


def _match_case(new: str, old: str) -> str:
    if old.isupper() and len(old) > 1:
        return new.upper()
    return new[:1].upper() + new[1:] if old[:1].isupper() else new


def paragraphs(text: str) -> list[str]:
    """Split after each blank line (`\\n\\n`, kept with the paragraph before it);
    `"".join(paragraphs(t)) == t`."""
    return [p for p in re.split(r"(?<=\n\n)", text) if p]


def replace_words(text: str, max_swaps: int, table: dict[str, list[str]],
                  scores: dict[str, float], rng: random.Random) -> str:
    """AutoDAN-HGA's word replacement: in every paragraph, up to `max_swaps` words that have
    substitutes are replaced (the paper: 5 per paragraph, in every child).

    The words are drawn at random among the paragraph's eligible ones (the reference walks in
    reading order and its roulette skips words; a uniform draw spreads the swaps the same way
    without its bias to the opening words). Each substitute is drawn by softmax over the
    momentum scores (a word not scored yet gets the table's mean, so it can still be explored).
    Capitalisation follows the replaced word; everything that is not a word is kept as it is.
    """
    default = sum(scores.values()) / len(scores) if scores else 0.0
    out = []
    for para in paragraphs(text):
        pieces = words(para)
        slots = [i for i in range(1, len(pieces), 2)
                 if _eligible(pieces[i]) and table.get(pieces[i].lower())]
        for i in sorted(rng.sample(slots, min(max_swaps, len(slots)))):
            subs = table[pieces[i].lower()]
            pick = softmax_pick([scores.get(s, default) for s in subs], rng)[0]
            pieces[i] = _match_case(subs[pick], pieces[i])
        out.append("".join(pieces))
    return "".join(out)
