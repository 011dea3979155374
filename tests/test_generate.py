"""Batched generation on tiny fp32 models: equals unbatched, plugs interventions, resumes."""

from __future__ import annotations

import json

import pytest
import torch

from refusalscope.data.load import Prompt
from refusalscope.errors import UserError
from refusalscope.generation import GenerateConfig, _split_completion, generate_rows
from refusalscope.models.tiny import tiny_handle

TEXTS = ["Write a short poem about the sea.", "hello", "Explain how photosynthesis works in plants, step by step please.",
         "The quick brown fox", "Sure, here is a recipe", "0123"]


def _prompts():
    return [Prompt(id=f"p{i}", prompt=t, split="eval", label="harmful", source="test")
            for i, t in enumerate(TEXTS)]


def _tokens(handle, rows):
    return {r["id"]: handle.tokenizer(r["response"])["input_ids"] for r in rows}


@pytest.mark.parametrize("arch", ["llama", "qwen2", "gemma3_text"])
def test_batched_equals_unbatched(arch):
    h = tiny_handle(arch, seed=3)
    cfg = GenerateConfig(model="tiny", n=6, max_new_tokens=10)
    batched = list(generate_rows(h, _prompts(), cfg, batch_size=6))
    single = list(generate_rows(h, _prompts(), cfg, batch_size=1))
    assert [r["id"] for r in batched] == [r["id"] for r in single]  # longest first, both
    for b, s in zip(batched, single, strict=True):
        assert b["response"] == s["response"]
        assert (b["prompt_tokens"], b["new_tokens"], b["finish_reason"]) == (
            s["prompt_tokens"], s["new_tokens"], s["finish_reason"])
    assert all(r["new_tokens"] <= 10 for r in batched)
    assert any(r["response"] for r in batched)


def test_interventions_change_output_and_are_removed():
    h = tiny_handle("llama", seed=3)
    cfg = GenerateConfig(model="tiny", n=6, max_new_tokens=8)
    plain = list(generate_rows(h, _prompts(), cfg, batch_size=3))
    push = torch.randn(h.d_model, generator=torch.Generator().manual_seed(1)) * 50
    steered = list(generate_rows(h, _prompts(), cfg, batch_size=3,
                                 interventions=[("blocks.1.hook_resid_post", lambda x, s: x + push)]))
    assert [r["response"] for r in plain] != [r["response"] for r in steered]
    again = list(generate_rows(h, _prompts(), cfg, batch_size=3))
    assert [r["response"] for r in plain] == [r["response"] for r in again]


def test_sampling_is_seeded():
    h = tiny_handle("qwen2", seed=0)
    cfg = GenerateConfig(model="tiny", n=6, max_new_tokens=8, temperature=1.0, seed=7)
    a = [r["response"] for r in generate_rows(h, _prompts(), cfg, batch_size=3)]
    b = [r["response"] for r in generate_rows(h, _prompts(), cfg, batch_size=3)]
    c = [r["response"] for r in generate_rows(h, _prompts(), GenerateConfig(
        model="tiny", n=6, max_new_tokens=8, temperature=1.0, seed=8), batch_size=3)]
    assert a == b and a != c


def test_split_completion():
    assert _split_completion([5, 6, 2, 0, 0], {2}) == ([5, 6], 3, "eos")
    assert _split_completion([5, 6, 7], {2}) == ([5, 6, 7], 3, "length")
    assert _split_completion([2], {2}) == ([], 1, "eos")


@pytest.mark.parametrize("kwargs, msg", [
    (dict(n=0), "--n"), (dict(split="train"), "unknown split"), (dict(max_new_tokens=0), "max-new"),
    (dict(temperature=-1.0), "temperature")])
def test_config_validation(kwargs, msg):
    with pytest.raises(UserError, match=msg):
        GenerateConfig(model="x", **kwargs)


def test_config_round_trip():
    cfg = GenerateConfig(model="m", split="direction", n=5, seed=3, system_prompt="s")
    assert GenerateConfig.from_dict(json.loads(json.dumps(cfg.to_dict()))) == cfg
    # the labels of a weights attack's run and a runtime defense are saved only when set
    assert not {"attack_run", "defense"} & set(cfg.to_dict())
    on = GenerateConfig(model="m", system_prompt="s", defense="safety")
    assert on.to_dict()["defense"] == "safety"
    assert GenerateConfig.from_dict(json.loads(json.dumps(on.to_dict()))) == on


def test_run_generate_resumes(tiny_folder, prompt_file):
    from refusalscope.fileio import read_jsonl
    from refusalscope.generation import GENERATIONS, run_generate

    cfg = GenerateConfig(model=str(tiny_folder), prompts_file=str(prompt_file), n=6, max_new_tokens=6)
    full = run_generate(cfg, batch_size=2)
    assert full.manifest.status == "success" and full.manifest.harmful_content
    rows = read_jsonl(full.file(GENERATIONS))
    assert sorted(r["id"] for r in rows) == [f"q{i}" for i in range(6)]

    # Simulate a kill after two rows plus a torn third line, then resume.
    part = full.path.parent / "interrupted"
    part.mkdir()
    (part / "manifest.json").write_text(full.file("manifest.json").read_text().replace('"success"', '"started"'))
    lines = full.file(GENERATIONS).read_text().splitlines(keepends=True)
    (part / GENERATIONS).write_text("".join(lines[:2]) + lines[2][:15])
    resumed = run_generate(cfg, batch_size=2, resume=str(part))
    again = read_jsonl(resumed.file(GENERATIONS))
    assert resumed.manifest.status == "success"
    assert sorted(r["id"] for r in again) == sorted(r["id"] for r in rows)
    by_id = {r["id"]: r["response"] for r in rows}
    assert all(by_id[r["id"]] == r["response"] for r in again)

    with pytest.raises(UserError, match="config differs"):
        run_generate(GenerateConfig(model=str(tiny_folder), prompts_file=str(prompt_file), n=5),
                     resume=str(part))
