"""Training rows for the outcome classifier (refused / complied / offtopic), with provenance.

`outcome_examples` assembles:

1. **PyRIT human labels** (`labelled.pyrit_examples`: refusals with refusal words, complied,
   complied with disclaimers) minus **every prompt group that holds a held-out response**
   (`scoring.heldout`: the project's independent held-out set, read at run time; its
   hand-written rows are never read here).
2. **Self-supervised off-topic pairs** (`offtopic_pairs`, kind `offtopic_pair`): a request
   paired with a complying response to *another* request on another topic (overlap below
   `MAX_PROMPT_JACCARD` between the requests and below `MAX_KEY_SHARE` of the request's key
   words in the response). Responses come from PyRIT's complied rows and, where present,
   from responses to harmless prompts in `artifacts/runs/*/generations.jsonl` that the
   heuristic does not call refusals.
3. **Hand-written rows** (`resources/handwritten_outcomes.jsonl`, `handwritten_examples`): 169
   responses written for this project in five classes the PyRIT labels lack (moralising
   refusals without refusal words, partial refusals, partial compliance, off-topic answers,
   error text). They were the held-out set of `minilm-outcome-v3`; from `minilm-outcome-v4` on
   they are training rows and the held-out set is `resources/heldout_outcomes_b.jsonl`,
   written independently of them and of the templates (`scoring.heldout`). Since
   `minilm-outcome-v6` set B trains too (held-out: set C), and since `minilm-outcome-v7` the
   training part of set D (`handwritten_outcomes_d.jsonl`, 200 rows in ten classes incl.
   persona-wrapped, disclaimed and sympathetic compliance and refusals that go on to discuss
   the topic; written blind by another hand, see `benchmarks/data/README.md`), and since
   `minilm-outcome-v8` the training part of set E (`handwritten_outcomes_e.jsonl`, 191 rows:
   fiction, terse technical notes, persuasive text and misinformation, structured and benign
   compliance; refusals followed by resources, empathetic steering without a refusal verb,
   deflection to a safe version, policy/meta refusals; non-answers), and since
   `minilm-outcome-v13` set K (`handwritten_outcomes_k{1,2}.jsonl`, 244 rows, training only:
   answers to a neighbouring question - digressions into the subject's history, scene-setting,
   harmless neighbouring tasks - and complying look-alikes of each), and since
   `minilm-outcome-v15` set M (`handwritten_outcomes_m{1,2,3}.jsonl`, 329 rows, training
   only: more neighbouring tasks, digressions and scene-setting, moralising refusals without
   refusal words, warnings followed by the content, and complying look-alikes), and since
   `minilm-outcome-v16` sets N, O and P (`handwritten_outcomes_{n,o,p}.jsonl`, 516 rows of
   the 555 that were scored once each as fresh held-out sets in session 9, less those touching
   sets C, I, J or L; five classes: off-topic of four kinds, moralising, plain refusals,
   compliance, partial compliance; six writers), and since `minilm-outcome-v17` set Q (232 of
   the 260 rows scored once as a fresh set in session 10) and set T (374 rows written as
   training rows by four more writers: moralising refusals written as informative text,
   answers to a neighbouring question, warnings then the content, persona and markdown
   compliance), and since `minilm-outcome-v21` sets R and S (441 of the 488 rows scored once
   as fresh sets in session 10) and sets T2 and T3 (737 training rows by eight more writers:
   moralising refusals, answers to a neighbouring question, their complying look-alikes,
   terse and fictional compliance); `benchmarks/data/README.md`.
4. **Generated rows** (`train_templates`): moralising refusals, partial refusals, off-topic
   texts, echoes, error texts, persona chatter, disclaimed compliance, for each request with
   the rates in `RATES`, seeded per request group; since `minilm-outcome-v12` also terse
   compliance (content sentences of a complying answer) and restated compliance (the request
   restated, then the answer).

Every generated row takes the group of the request it answers, so a request and all its rows
land on one split side; generators pick their template fragments by that side
(`labelled.side_of` with `SPLIT_SALT`), so held-out rows use held-out wordings.
"""

from __future__ import annotations

import json
import logging
import random
from collections import Counter
from collections.abc import Callable, Iterable, Sequence
from pathlib import Path
from typing import Any

from refusalscope.scoring import train_templates as tt
from refusalscope.scoring.labelled import Example, group_of, side_of

log = logging.getLogger(__name__)
SPLIT_SALT = "outcome-v3:"
MAX_PROMPT_JACCARD = 0.1  # content-word Jaccard of two requests above this: same topic
MAX_KEY_SHARE = 0.2  # share of the request's content words found in the response above this
RATES = {"moralising": 0.9, "partial_refusal": 0.45, "offtopic": 0.3, "echo": 0.35,
         "error_text": 0.35, "persona": 0.35, "partial_compliance": 0.25,
         "sympathetic_compliance": 0.15, "plain_refusal": 0.3, "terse_compliance": 0.5,
         "restated_compliance": 0.6}
MAX_RUN_RESPONSES = 300
content_words = tt.content_words  # lower-cased words of 3+ characters, no stopwords or numbers


def same_topic(request: str, other_request: str, other_response: str) -> bool:
    """True if `other_response` (an answer to `other_request`) may address `request`."""
    a, b = content_words(request), content_words(other_request)
    if not a:
        return True  # nothing to compare: never risk a pair
    if a == b or len(a & b) / len(a | b) > MAX_PROMPT_JACCARD:
        return True
    return len(a & content_words(other_response)) / len(a) > MAX_KEY_SHARE


def offtopic_pairs(requests: Sequence[tuple[str, str]], answers: Sequence[Example], *,
                   seed: int, side: Callable[[str], str], per_request: int = 1) -> list[Example]:
    """Each (prompt, group) request paired with `per_request` answers to other requests.

    `answers` are complying examples; a pair needs a different group, a different prompt,
    the same split side (`side(group)`), and `not same_topic(...)`. Seeded per request group.

    Example:
        offtopic_pairs([("How do I bake bread?", "g1")], pyrit_complied, seed=0, side=side)
    """
    by_side: dict[str, list[Example]] = {}
    for a in answers:
        by_side.setdefault(side(a.group), []).append(a)
    out = []
    for prompt, group in requests:
        rng = random.Random(f"pairs:{seed}:{group}")
        pool = list(by_side.get(side(group), ()))
        rng.shuffle(pool)
        norm = " ".join(prompt.lower().split())
        picked = 0
        for a in pool:
            if picked == per_request:
                break
            if a.group == group or " ".join(a.prompt.lower().split()) == norm \
                    or same_topic(prompt, a.prompt, a.response):
                continue
            out.append(Example(prompt, a.response, False, f"pair:{a.source}", group,
                               "offtopic_pair", "offtopic"))
            picked += 1
    return out


def generated_examples(requests: Sequence[tuple[str, str]], complied: Sequence[Example], *,
                       seed: int, side: Callable[[str], str],
                       rates: dict[str, float] | None = None) -> list[Example]:
    """Template rows for each request (see `train_templates`), and disclaimed compliance made
    from `complied` rows. Same seed and inputs, same rows."""
    rates = {**RATES, **(rates or {})}
    out = []
    for prompt, group in requests:
        rng = random.Random(f"gen:{seed}:{group}")
        held = side(group) == "heldout"

        def add(kind: str, text: str | None, outcome: str) -> None:
            if text:
                out.append(Example(prompt, text, outcome == "refused", "generated", group,
                                   kind, outcome))

        draws = {k: rng.random() for k in sorted(rates)}  # one draw per kind: stable order
        if draws["moralising"] < rates["moralising"]:
            add("moralising", tt.moralising(prompt, rng, held), "refused")
        if draws["plain_refusal"] < rates["plain_refusal"]:
            add("refusal_words", tt.plain_refusal(prompt, rng, held), "refused")
        if draws["partial_refusal"] < rates["partial_refusal"]:
            add("partial_refusal", tt.partial_refusal(prompt, rng, held), "refused")
        if draws["offtopic"] < rates["offtopic"]:
            add("offtopic", tt.offtopic_text(rng, held), "offtopic")
        if draws["echo"] < rates["echo"]:
            add("echo", tt.echo(prompt, rng, held), "offtopic")
        if draws["error_text"] < rates["error_text"]:
            add("error_text", tt.error_text(rng, held), "offtopic")
        if draws["persona"] < rates["persona"]:
            add("persona", tt.persona(rng, held), "offtopic")
    wrappers = (("partial_compliance", tt.partial_compliance),
                ("sympathetic_compliance", tt.sympathetic_compliance))
    # complied rows rewritten from a complying answer (None when the answer gives none)
    reshaped: tuple[tuple[str, str, Callable[[Example, random.Random, bool], str | None]], ...] = (
        ("terse_compliance", "terse",
         lambda ex, rng, held: tt.terse_compliance(ex.prompt, ex.response, rng)),
        ("restated_compliance", "restate",
         lambda ex, rng, held: tt.restated_compliance(ex.prompt, ex.response, rng, held)))
    for ex in complied:
        rng = random.Random(f"disclaim:{seed}:{ex.group}:{ex.response[:64]}")
        draws = [rng.random() for _ in wrappers]
        for (kind, wrap), u in zip(wrappers, draws, strict=True):
            if u < rates[kind]:
                out.append(Example(ex.prompt, wrap(ex.response, rng, side(ex.group) == "heldout"),
                                   False, "generated", ex.group, kind, "complied"))
        held = side(ex.group) == "heldout"
        for kind, salt, make in reshaped:  # each its own stream: the rows above stay as they were
            if rates[kind] > 0:
                rng = random.Random(f"{salt}:{seed}:{ex.group}:{ex.response[:64]}")
                text = make(ex, rng, held) if rng.random() < rates[kind] else None
                if text:
                    out.append(Example(ex.prompt, text, False, "generated", ex.group, kind,
                                       "complied"))
    return out


# set A (169 rows, v3's held-out set) and set B (270 rows, v4/v5's held-out set); since
# minilm-outcome-v6 both train and the held-out set is C (`scoring.heldout`)
# and the training parts of sets D (184 rows, from minilm-outcome-v7) and E (191 rows, from
# minilm-outcome-v8), each written blind by another hand; their other rows are the development
# sets benchmarks/data/dev_outcomes_{d,e}.jsonl (see benchmarks/data/README.md)
HANDWRITTEN_FILES = ("handwritten_outcomes.jsonl", "handwritten_outcomes_b.jsonl",
                     "handwritten_outcomes_d.jsonl", "handwritten_outcomes_e.jsonl",
                     "handwritten_outcomes_k1.jsonl", "handwritten_outcomes_k2.jsonl",
                     "handwritten_outcomes_m1.jsonl", "handwritten_outcomes_m2.jsonl",
                     "handwritten_outcomes_m3.jsonl", "handwritten_outcomes_n.jsonl",
                     "handwritten_outcomes_o.jsonl", "handwritten_outcomes_p.jsonl",
                     "handwritten_outcomes_q.jsonl", "handwritten_outcomes_t.jsonl",
                     "handwritten_outcomes_r.jsonl", "handwritten_outcomes_s.jsonl",
                     "handwritten_outcomes_t2.jsonl", "handwritten_outcomes_t3.jsonl")
# class of a hand-written row -> (kind, outcome) of its training example
HANDWRITTEN_KINDS = {"moralising": ("moralising", "refused"),
                     "partial_refusal": ("partial_refusal", "refused"),
                     "plain_refusal": ("refusal_words", "refused"),
                     "partial_compliance": ("partial_compliance", "complied"),
                     "sympathetic_compliance": ("sympathetic_compliance", "complied"),
                     "off_topic": ("offtopic", "offtopic"),
                     "error_text": ("error_text", "offtopic"),
                     # set D's classes
                     "refusal_then_topic": ("refusal_words", "refused"),
                     "error_or_echo": ("error_text", "offtopic"),
                     "compliance": ("compliance", "complied"),
                     "persona_compliance": ("compliance", "complied"),
                     "disclaimer_compliance": ("sympathetic_compliance", "complied"),
                     # set E's classes
                     "fiction_compliance": ("compliance", "complied"),
                     "terse_technical": ("compliance", "complied"),
                     "persuasive_or_misinfo": ("compliance", "complied"),
                     "structured_compliance": ("compliance", "complied"),
                     "ordinary_compliance_benign": ("compliance", "complied"),
                     "refusal_then_resources": ("refusal_words", "refused"),
                     "empathetic_no_verb": ("moralising", "refused"),
                     "deflect_to_safe_version": ("partial_refusal", "refused"),
                     "meta_refusal": ("refusal_words", "refused"),
                     "nonanswer": ("offtopic", "offtopic"),
                     # set F's classes: F is a development set; the rejected candidate
                     # minilm-outcome-v9 trained on its split (benchmarks/RESULTS.md)
                     "placeholder_compliance": ("compliance", "complied"),
                     "terse_answer": ("compliance", "complied"),
                     "preamble_compliance": ("compliance", "complied"),
                     "code_compliance": ("compliance", "complied"),
                     "benign_edgy": ("compliance", "complied"),
                     "roleplay_or_creative": ("compliance", "complied"),
                     "moralising_no_verb": ("moralising", "refused"),
                     "off_topic_or_nonanswer": ("offtopic", "offtopic"),
                     # set K's classes (training only, from minilm-outcome-v13): answers to a
                     # neighbouring question and their complying look-alikes
                     "digression": ("offtopic", "offtopic"),
                     "scene_setting": ("persona", "offtopic"),
                     "neighbour_task": ("offtopic", "offtopic"),
                     "unrelated": ("offtopic", "offtopic"),
                     "contrast_compliance": ("compliance", "complied")}


def handwritten_examples() -> list[Example]:
    """The hand-written labelled rows of every file in `HANDWRITTEN_FILES` (source
    `handwritten`), each in its request's group."""
    from importlib import resources

    folder = resources.files("refusalscope.scoring.resources")
    text = "\n".join(folder.joinpath(f).read_text(encoding="utf-8") for f in HANDWRITTEN_FILES)
    out = []
    for line in text.splitlines():
        if line.strip():
            d = json.loads(line)
            kind, outcome = HANDWRITTEN_KINDS[d["class"]]
            out.append(Example(d["request"], d["response"], outcome == "refused", "handwritten",
                               group_of(d["request"]), kind, outcome))
    return out


def exclude_heldout(examples: Iterable[Example],
                    is_heldout: Callable[[str], bool] | None = None
                    ) -> tuple[list[Example], dict[str, int]]:
    """Drop every prompt group that holds a held-out response (`heldout.is_heldout_response`,
    read at call time), so neither the held-out texts nor their prompts are trained on."""
    if is_heldout is None:
        from refusalscope.scoring.heldout import is_heldout_response as is_heldout
    rows = list(examples)
    groups = {e.group for e in rows if is_heldout(e.response)}
    kept = [e for e in rows if e.group not in groups]
    return kept, {"excluded_groups": len(groups), "excluded_rows": len(rows) - len(kept),
                  "held_out_responses_seen": sum(is_heldout(e.response) for e in rows)}


def run_answers(runs_dir: Path, limit: int = MAX_RUN_RESPONSES
                ) -> tuple[list[Example], list[dict[str, Any]]]:
    """Complying responses to harmless prompts from generate runs (heuristic: not refused,
    at least 20 words), as off-topic material; with one source record per file used."""
    from refusalscope.fileio import read_jsonl, sha256_file
    from refusalscope.scoring.heuristic import HeuristicScorer

    h, out, sources = HeuristicScorer(), [], []
    for gen in sorted(runs_dir.glob("*/generations.jsonl")) if runs_dir.is_dir() else []:
        try:
            manifest = json.loads((gen.parent / "manifest.json").read_text())
            rows = read_jsonl(gen)
        except (OSError, ValueError):
            continue
        if not (manifest.get("config") or {}).get("harmless"):
            continue
        got = [Example(r["prompt"], r["response"], False, f"run:{gen.parent.name}",
                       group_of(r["prompt"]), "compliance")
               for r in rows if isinstance(r.get("response"), str) and r.get("prompt")
               and len(r["response"].split()) >= 20
               and not h.label(r["prompt"], r["response"]).refused]
        got = got[:max(0, limit - len(out))]
        if got:
            out += got
            sources.append({"name": f"run:{gen.parent.name}", "path": str(gen),
                            "sha256": sha256_file(gen), "n": len(got),
                            "used_as": "off-topic answers to other requests"})
    return out, sources


def outcome_examples(*, seed: int = 0, pyrit: bool = True, extra: Sequence[Example] = (),
                     runs_dir: Path | None = None, generated: bool = True,
                     handwritten: bool = True,
                     pairs: bool = False, heldout_frac: float = 0.2, calib_frac: float = 0.15
                     ) -> tuple[list[Example], list[dict[str, Any]]]:
    """All outcome-training rows and the source records for the model card (see module doc).

    `extra` (user files) joins PyRIT; the held-out exclusion applies to both. With
    `generated`, every request gets template rows, and with `pairs` also off-topic pairs,
    seeded by `seed` and drawn by the split side of its group (`SPLIT_SALT`, the same
    fractions as the split). Pairs are off by default: MiniLM trained on them for 2 epochs
    (`minilm-outcome-v3-pairs`) called only 25% of held-out pairs off-topic, and 22 of 130
    held-out complied rows off-topic (17 of 130 without pairs): answering another harmful
    request looks like answering this one to it. The relevance check (`scoring.relevance`)
    judges that instead.
    """
    from refusalscope.scoring.labelled import pyrit_examples

    def side(group: str) -> str:
        return side_of(group, seed=seed, heldout_frac=heldout_frac, calib_frac=calib_frac,
                       salt=SPLIT_SALT)

    sources: list[dict[str, Any]] = []
    base, excl = exclude_heldout(extra)
    if excl["excluded_rows"]:
        sources.append({"name": "files_heldout_exclusion", **excl})
    if pyrit:
        rows, counts = pyrit_examples()
        rows, excl = exclude_heldout(rows)
        base += rows
        sources.append({"name": "pyrit", **counts, "heldout_exclusion": excl,
                        "kept": dict(sorted(Counter(e.kind for e in rows).items()))})
    if handwritten:
        rows, excl = exclude_heldout(handwritten_examples())
        base += rows
        sources.append({"name": "handwritten", "resources": list(HANDWRITTEN_FILES),
                        "n": len(rows),
                        "heldout_exclusion": excl,
                        "kinds": dict(sorted(Counter(e.kind for e in rows).items()))})
    if not generated:
        return base, sources
    from_runs, run_sources = run_answers(runs_dir) if runs_dir and pairs else ([], [])
    sources += run_sources
    first: dict[str, str] = {}
    for e in sorted(base, key=lambda e: (e.group, e.prompt)):
        first.setdefault(e.group, e.prompt)  # one request per group: generated once
    requests = [(p, g) for g, p in first.items()]
    complied = [e for e in base if e.outcome == "complied" and e.kind in ("", "compliance")]
    paired = offtopic_pairs(requests, complied + from_runs, seed=seed, side=side) \
        if pairs else []
    gen = generated_examples(requests, complied, seed=seed, side=side)
    if pairs:
        sources.append({"name": "offtopic_pairs", "n": len(paired), "seed": seed, "rule": (
            f"request paired with a complying answer to another request: other group, same "
            f"split side, request Jaccard <= {MAX_PROMPT_JACCARD}, request key-word share in "
            f"the answer <= {MAX_KEY_SHARE}")})
    sources.append({"name": "generated", "resource": tt.RESOURCE,
                    "version": tt.templates()["version"], "sha256": tt.templates_sha256(),
                    "rates": RATES, "seed": seed,
                    "n": dict(sorted(Counter(e.kind for e in gen).items()))})
    return base + paired + gen, sources
