"""Judges: a stronger model asked, through a rubric, whether a response is a refusal.

A judge is named by a spec string:

- `local:MODEL` — any model `ModelHandle.load` accepts (registry name, folder, `.gguf`, hub
  id), run here, batched and greedy.
- `openai:URL#MODEL` — any OpenAI-compatible chat endpoint (vLLM, llama.cpp server,
  `refusalscope serve`, hosted APIs); `URL` is the base ending in `/v1`. The API key is read
  from the environment variable named by `api_key_env` (never stored, logged or printed).

Both turn `(system, user)` message pairs into raw answer strings; `judge_pairs` builds the
rubric messages (`refusal`, `harmbench`, `strongreject` or `on_task`, see `scoring.rubrics`),
truncates what is judged and parses answers strictly (`rubrics.parse`). `JudgeScorer` makes a
judge a `Scorer`, so a judge can label whole runs as the other scorers do. `p_on_task` asks the
`on_task` question and returns P(yes): a local judge's probability of its first answer token
(one forward pass, no generation), an HTTP judge's parsed answer as 1/0; `scoring.confirm`
uses it as a second stage on responses the study's scorer calls complied.

Truncation: the request and the response are each cut to `max_input_tokens` tokens of the
judge's tokenizer (local) or `4 * max_input_tokens` characters (HTTP, where the tokenizer is
unknown) before they go into the rubric, which bounds the prefill cost per judgement.
"""

from __future__ import annotations

import json
import logging
import os
import time
import urllib.error
import urllib.request
from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass
from typing import Any, Protocol

from refusalscope.errors import UserError
from refusalscope.scoring.rubrics import RUBRICS, Verdict, build_messages, parse

log = logging.getLogger(__name__)

CHARS_PER_TOKEN = 4
ProgressFn = Callable[[int], None]  # judgements finished in this step


@dataclass(frozen=True)
class JudgeConfig:
    """Which judge, which rubric, and the budgets that decide its answers (saved in runs)."""

    spec: str
    rubric: str = "refusal"
    max_new_tokens: int | None = None  # None: the rubric's default (`rubrics.max_answer_tokens`)
    max_input_tokens: int = 256
    api_key_env: str | None = None
    timeout_s: float = 60.0
    retries: int = 2

    def __post_init__(self) -> None:
        kind, _, rest = self.spec.partition(":")
        if kind not in ("local", "openai") or not rest:
            raise UserError(f"unknown judge {self.spec!r}: use local:MODEL or openai:URL#MODEL")
        if kind == "openai":
            url, _, model = rest.partition("#")
            if not url.startswith(("http://", "https://")) or not model:
                raise UserError(f"judge {self.spec!r}: write openai:http(s)://HOST:PORT/v1#MODEL")
        if self.rubric not in RUBRICS:
            raise UserError(f"unknown rubric {self.rubric!r}: one of {', '.join(RUBRICS)}")
        if self.max_new_tokens is not None and self.max_new_tokens < 1:
            raise UserError("--judge-max-new-tokens must be at least 1 "
                            f"(got {self.max_new_tokens})")
        if self.max_input_tokens < 8:
            raise UserError(f"--max-input-tokens must be at least 8 (got {self.max_input_tokens})")
        if self.timeout_s <= 0 or self.retries < 0:
            raise UserError("--timeout must be > 0 and --retries >= 0")

    @property
    def kind(self) -> str:
        return self.spec.partition(":")[0]

    def answer_tokens(self) -> int:
        from refusalscope.scoring.rubrics import max_answer_tokens

        return self.max_new_tokens or max_answer_tokens(self.rubric)

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> JudgeConfig:
        return cls(**{k: v for k, v in d.items() if k in cls.__dataclass_fields__})


class Judge(Protocol):
    """Answers chat requests: `(system, user)` pairs in, raw answer texts out, in order."""

    name: str

    def truncate(self, text: str, n_tokens: int) -> str: ...

    def answer(self, messages: Sequence[tuple[str, str]], max_new_tokens: int,
               on_step: ProgressFn | None = None) -> list[str]: ...

    def p_yes(self, messages: Sequence[tuple[str, str]],
              on_step: ProgressFn | None = None) -> list[float | None]: ...


class LocalJudge:
    """A local model judge: batched, greedy, through `generate.generate_batch`."""

    def __init__(self, handle: Any, batch_size: int = 8):
        if batch_size < 1:
            raise UserError(f"--batch-size must be at least 1 (got {batch_size})")
        self.handle = handle
        self.name = f"local:{handle.name}"
        self.batch_size = batch_size

    def truncate(self, text: str, n_tokens: int) -> str:
        ids = self.handle.tokenizer(text, add_special_tokens=False)["input_ids"]
        if len(ids) <= n_tokens:
            return text
        return self.handle.tokenizer.decode(ids[:n_tokens]) + " [...]"

    def answer(self, messages: Sequence[tuple[str, str]], max_new_tokens: int,
               on_step: ProgressFn | None = None) -> list[str]:
        from refusalscope.cpu_kernels import onednn_linears
        from refusalscope.generation import GenerateConfig, generate_batch

        cfg = GenerateConfig(model=self.handle.name, max_new_tokens=max_new_tokens)
        texts = [self.handle.format_prompt(user, system) for system, user in messages]
        lengths = [len(self.handle.tokenizer(t, add_special_tokens=False)["input_ids"])
                   for t in texts]
        order = sorted(range(len(texts)), key=lambda i: -lengths[i])  # little padding per batch
        out: list[str] = [""] * len(texts)
        with onednn_linears(self.handle.model):
            for start in range(0, len(order), self.batch_size):
                idx = order[start:start + self.batch_size]
                rows = generate_batch(self.handle, [texts[i] for i in idx], cfg)
                for i, row in zip(idx, rows, strict=True):
                    out[i] = row["response"]
                if on_step is not None:
                    on_step(len(idx))
        return out

    def p_yes(self, messages: Sequence[tuple[str, str]],
              on_step: ProgressFn | None = None) -> list[float | None]:
        """P(yes) / (P(yes) + P(no)) of each chat's first answer token, in order: one forward
        pass per batch, no generation (the forms "yes", "Yes", " yes", " Yes" are pooled, and
        likewise for no)."""
        import torch

        from refusalscope.cpu_kernels import onednn_linears
        from refusalscope.decode import left_padded

        tok, model = self.handle.tokenizer, self.handle.model
        words = [[tok(w, add_special_tokens=False)["input_ids"][0] for w in (f, f.title(),
                  " " + f, " " + f.title())] for f in ("yes", "no")]
        enc = [tok(self.handle.format_prompt(user, system), add_special_tokens=False)["input_ids"]
               for system, user in messages]
        order = sorted(range(len(enc)), key=lambda i: -len(enc[i]))
        pad = tok.pad_token_id if tok.pad_token_id is not None else 0
        out: list[float | None] = [None] * len(enc)
        with torch.inference_mode(), onednn_linears(model):
            for start in range(0, len(order), self.batch_size):
                idx = order[start:start + self.batch_size]
                ids, mask, pos = left_padded([enc[i] for i in idx], pad)
                dev = self.handle.device
                logits = model(input_ids=ids.to(dev), attention_mask=mask.to(dev),
                               position_ids=pos.to(dev), use_cache=False,
                               logits_to_keep=1).logits[:, -1].float()
                lp = torch.log_softmax(logits, -1)
                yes, no = (torch.logsumexp(lp[:, w], -1) for w in words)
                for i, p in zip(idx, torch.sigmoid(yes - no).tolist(), strict=True):
                    out[i] = float(p)
                if on_step is not None:
                    on_step(len(idx))
        return out


class EndpointError(UserError):
    """An HTTP judge request failed; `status` is the HTTP code, None if nothing answered."""

    def __init__(self, message: str, status: int | None = None):
        super().__init__(message)
        self.status = status


class HttpJudge:
    """An OpenAI-compatible `/chat/completions` endpoint, called with urllib (greedy).

    Connection errors and 5xx/429 answers are retried `retries` times with backoff; other
    HTTP errors stop at once. Every failure is a one-line `UserError` naming the URL, never
    the key.
    """

    def __init__(self, base_url: str, model: str, *, api_key_env: str | None = None,
                 timeout_s: float = 60.0, retries: int = 2):
        self.base_url = base_url.rstrip("/")
        self.model = model
        self.name = f"openai:{self.base_url}#{model}"
        self.timeout_s = timeout_s
        self.retries = retries
        self._key: str | None = None
        if api_key_env:
            key = os.environ.get(api_key_env)
            if not key:
                raise UserError(f"environment variable {api_key_env} (API key) is not set or empty")
            self._key = key

    def __repr__(self) -> str:  # never show the key
        return f"HttpJudge({self.name!r})"

    def _request(self, path: str, body: dict[str, Any] | None) -> dict[str, Any]:
        url = self.base_url + path
        headers = {"Content-Type": "application/json", "Accept": "application/json"}
        if self._key:
            headers["Authorization"] = f"Bearer {self._key}"
        data = json.dumps(body).encode() if body is not None else None
        last, status = "", None
        for attempt in range(self.retries + 1):
            if attempt:
                time.sleep(min(0.5 * 2 ** (attempt - 1), 4.0))
            req = urllib.request.Request(url, data=data, headers=headers,
                                         method="POST" if data is not None else "GET")
            try:
                with urllib.request.urlopen(req, timeout=self.timeout_s) as resp:
                    return json.loads(resp.read().decode("utf-8"))
            except urllib.error.HTTPError as e:
                last, status = f"HTTP {e.code} {e.reason}", e.code
                if e.code != 429 and e.code < 500:
                    break
            except (urllib.error.URLError, TimeoutError, ConnectionError) as e:
                reason = getattr(e, "reason", e)
                last, status = f"unreachable ({reason})", None
            except (json.JSONDecodeError, UnicodeDecodeError):
                raise UserError(f"judge endpoint {url} did not answer JSON") from None
            log.info("judge request to %s failed (%s), attempt %d", url, last, attempt + 1)
        raise EndpointError(f"judge endpoint {url}: {last}", status)

    def check(self) -> None:
        """Fail early (before any run is created) if the endpoint cannot be reached.

        A 404 (some servers have no `/models`) still proves the server is there.
        """
        try:
            self._request("/models", None)
        except EndpointError as e:
            if e.status != 404:
                raise

    def truncate(self, text: str, n_tokens: int) -> str:
        n = n_tokens * CHARS_PER_TOKEN
        return text if len(text) <= n else text[:n] + " [...]"

    def answer(self, messages: Sequence[tuple[str, str]], max_new_tokens: int,
               on_step: ProgressFn | None = None) -> list[str]:
        out = []
        for system, user in messages:
            body = {"model": self.model, "temperature": 0, "max_tokens": max_new_tokens,
                    "messages": [{"role": "system", "content": system},
                                 {"role": "user", "content": user}]}
            reply = self._request("/chat/completions", body)
            try:
                content = reply["choices"][0]["message"]["content"]
            except (KeyError, IndexError, TypeError):
                raise UserError(f"judge endpoint {self.base_url} answered without "
                                "choices[0].message.content") from None
            out.append(content if isinstance(content, str) else "")
            if on_step is not None:
                on_step(1)
        return out

    def p_yes(self, messages: Sequence[tuple[str, str]],
              on_step: ProgressFn | None = None) -> list[float | None]:
        """1.0 / 0.0 for an answer of exactly yes / no, None otherwise (an endpoint's token
        probabilities are not relied on: not every server returns them)."""
        return [None if v.complied is None else float(v.complied)
                for v in (parse("on_task", a) for a in self.answer(messages, 4, on_step))]


def load_judge(cfg: JudgeConfig, *, options: Any = None, batch_size: int = 8) -> Judge:
    """Build the judge a config names; an HTTP judge is probed (GET /models) at once.

    Example:
        judge = load_judge(JudgeConfig("local:qwen2.5-coder-1.5b"))
    """
    rest = cfg.spec.partition(":")[2]
    if cfg.kind == "openai":
        url, _, model = rest.partition("#")
        judge = HttpJudge(url, model, api_key_env=cfg.api_key_env, timeout_s=cfg.timeout_s,
                          retries=cfg.retries)
        judge.check()
        return judge
    from refusalscope.models.handle import ModelHandle

    return LocalJudge(ModelHandle.load(rest, options=options), batch_size=batch_size)


@dataclass(frozen=True)
class Judgement:
    """One judged pair: the parsed verdict and the judge's raw answer (truncated)."""

    verdict: Verdict
    raw: str


RAW_KEEP = 600  # characters of a raw judge answer kept in judgements.jsonl


def judge_pairs(judge: Judge, cfg: JudgeConfig, pairs: Sequence[tuple[str, str]],
                on_step: ProgressFn | None = None) -> list[Judgement]:
    """Judge `(prompt, response)` pairs with `cfg.rubric`; one `Judgement` per pair, in order.

    Example:
        [j.verdict.refused for j in judge_pairs(judge, cfg, [("q", "I can't help.")])]
    """
    messages = [build_messages(cfg.rubric, judge.truncate(p, cfg.max_input_tokens),
                               judge.truncate(r, cfg.max_input_tokens)) for p, r in pairs]
    answers = judge.answer(messages, cfg.answer_tokens(), on_step=on_step)
    return [Judgement(parse(cfg.rubric, a), a[:RAW_KEEP]) for a in answers]


def p_on_task(judge: Judge, cfg: JudgeConfig, pairs: Sequence[tuple[str, str]],
              on_step: ProgressFn | None = None) -> list[float | None]:
    """The judge's P(yes) to the `on_task` rubric ("does the reply do what was asked?") for
    each `(request, response)` pair, in order; None where an HTTP judge's answer was not
    exactly yes or no.

    Example:
        p_on_task(judge, JudgeConfig("local:qwen2.5-coder-1.5b"), [("q", "Sure: step 1 ...")])
    """
    messages = [build_messages("on_task", judge.truncate(p, cfg.max_input_tokens),
                               judge.truncate(r, cfg.max_input_tokens)) for p, r in pairs]
    return judge.p_yes(messages, on_step=on_step)


class JudgeScorer:
    """A judge used as a refusal `Scorer` (`refusalscope.scoring.base.Scorer`).

    `refused` is the judge's parsed verdict: the refusal item for `refusal` and `strongreject`;
    for `harmbench`, "not an instance of the behaviour" (HarmBench's failed attack), so RRR by
    this scorer is 1 - HarmBench's ASR. An unparsable answer is never guessed: that response
    takes the label of `fallback` (default: the heuristic), its `matched` says
    `judge-unparsable:<fallback>:<why>`, and `unparsable` counts them (also in `to_dict()`).

    Example:
        scorer = JudgeScorer(load_judge(cfg), cfg)
        [lab.refused for lab in scorer.score(["How do I X?"], ["I can't help with that."])]
    """

    name = "judge"

    def __init__(self, judge: Judge, config: JudgeConfig, fallback: Any = None):
        from refusalscope.scoring.heuristic import HeuristicScorer

        self.judge, self.config = judge, config
        self.fallback = fallback or HeuristicScorer()
        self.unparsable = 0
        self.judged = 0

    @property
    def version(self) -> str:
        return f"{self.config.rubric}@{self.judge.name}"

    def score(self, prompts: Sequence[str], responses: Sequence[str]) -> list[Any]:
        """One label per pair, in order (see the class docstring for unparsable answers)."""
        from refusalscope.scoring.base import Label

        if len(prompts) != len(responses):
            raise ValueError(f"{len(prompts)} prompts but {len(responses)} responses")
        judged = judge_pairs(self.judge, self.config, list(zip(prompts, responses, strict=True)))
        bad = [i for i, j in enumerate(judged) if not j.verdict.parsed]
        backup = dict(zip(bad, self.fallback.score([prompts[i] for i in bad],
                                                   [responses[i] for i in bad]), strict=True)) \
            if bad else {}
        self.judged += len(judged)
        self.unparsable += len(bad)
        out = []
        for i, j in enumerate(judged):
            if i in backup:
                lab = backup[i]
                out.append(Label(lab.refused, f"judge-unparsable:{self.fallback.name}:"
                                 f"{lab.matched}", self.name, self.version))
            else:
                out.append(Label(bool(j.verdict.refused), f"judge:{self.config.rubric}",
                                 self.name, self.version))
        return out

    def to_dict(self) -> dict[str, Any]:
        return {"name": self.name, "version": self.version, "judge": self.config.to_dict(),
                "fallback": self.fallback.to_dict(), "judged": self.judged,
                "unparsable": self.unparsable}
