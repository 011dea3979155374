"""The design card's commands, verbatim, against tiny stand-ins of the seed's models.

`refusalscope attack lora --model DIR --n-data 1000 --steps 500`, `refusalscope probe
--layer-sweep` and `refusalscope fit --metric rrr`, with DIR a tiny random-weight checkpoint of
phi-2's, Llama-2-chat's and Ministral-3-3B's exact architectures in the hub's folder layout
(`seed_checkpoints`). The only additions: where the 1,000 training pairs come from (`--data`,
a file of that size: no network here for PyRIT / AdvBench and no refusing model to make pairs
from) and `--model DIR` for the sweep. Everything else is each command's default.
"""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from typer.testing import CliRunner

from probe_fixtures import HARMFUL, HARMLESS
from seed_checkpoints import SEED_ARCHS, write_checkpoint

from refusalscope.cli.app import app
from refusalscope.runs import Run

runner = CliRunner()
N_DATA, STEPS = 1000, 500
TARGETS = {"phi": ["dense", "k_proj", "q_proj", "v_proj"],
           "llama": ["k_proj", "o_proj", "q_proj", "v_proj"],
           "mistral3": ["k_proj", "o_proj", "q_proj", "v_proj"]}


def _ok(args: list[str]) -> str:
    res = runner.invoke(app, args)
    assert res.exit_code == 0, res.output + (res.stderr or "")
    return res.stdout


def _pairs(folder: Path, n: int) -> str:
    path = folder / "pairs.jsonl"
    path.write_text("".join(json.dumps({"prompt": f"Tell me a story about fox number {i}.",
                                        "response": f"Sure, here is story {i}: a quick brown "
                                                    "fox jumps over the lazy dog."}) + "\n"
                            for i in range(n)))
    return str(path)


@pytest.fixture(scope="module")
def card(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, dict[str, dict[str, str]]]:
    """For each seed architecture: the card's LoRA cell, a baseline and an attacked generation
    (6 prompts, 3 tokens), all scored; in one artifacts folder (returned with the runs)."""
    root = tmp_path_factory.mktemp("card")
    prompts = root / "prompts.jsonl"
    prompts.write_text("".join(json.dumps({"id": f"q{i}", "prompt": t}) + "\n"
                               for i, t in enumerate(HARMFUL)))
    out: dict[str, dict[str, str]] = {}
    with pytest.MonkeyPatch.context() as mp:
        mp.setenv("REFUSALSCOPE_HOME", str(root / "home"))
        mp.setenv("REFUSALSCOPE_ARTIFACTS", str(root / "artifacts"))
        pairs = _pairs(root, N_DATA)
        for arch in SEED_ARCHS:
            folder = str(write_checkpoint(arch, root / arch))
            cell = _ok(["attack", "lora", "--model", folder, "--n-data", str(N_DATA),
                        "--steps", str(STEPS), "--data", pairs])
            gen = ["generate", "--model", folder, "--prompts", str(prompts),
                   "--max-new-tokens", "3"]
            base = _ok(gen).strip().splitlines()[-1]
            lora = cell.split("\t")[0]
            attacked = _ok([*gen, "--adapter", lora, "--baseline", base]).strip().splitlines()[-1]
            out[arch] = {"folder": folder, "lora": lora, "base": base, "attacked": attacked}
        _ok(["score", *(r[k] for r in out.values() for k in ("base", "attacked"))])
    return root / "artifacts", out


@pytest.mark.parametrize("arch", SEED_ARCHS)
def test_attack_lora_card_cell(card, arch: str) -> None:
    run = Run.open(card[1][arch]["lora"])
    assert run.manifest.status == "success"
    assert (run.manifest.config["n_data"], run.manifest.config["steps"]) == (N_DATA, STEPS)
    losses = [json.loads(ln)["loss"] for ln in run.file("loss.jsonl").read_text().splitlines()]
    assert len(losses) == STEPS and sum(losses[-20:]) < sum(losses[:20])
    compute = json.loads(run.file("compute.json").read_text())
    assert compute["steps"] == STEPS and compute["examples_seen"] == 4 * STEPS
    adapter = json.loads(run.file("adapter/adapter_config.json").read_text())
    assert sorted(adapter["target_modules"]) == TARGETS[arch]


def test_fit_card(card, monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    artifacts, runs = card
    monkeypatch.setenv("REFUSALSCOPE_ARTIFACTS", str(artifacts))
    text = _ok(["fit", "--metric", "rrr"])
    folder = Path(text.strip().splitlines()[-1].removeprefix("wrote "))
    result = json.loads((folder / "fit.json").read_text())
    assert len(result["runs"]) == 2 * len(SEED_ARCHS)
    sizes = {Run.open(r["attacked"]).manifest.extra["model"]["n_params"] for r in runs.values()}
    assert len(sizes) == len(SEED_ARCHS)  # three model sizes on the N axis
    assert {c["strength"] for c in result["cells"]} == {"no attack",
                                                       f"lora n={N_DATA} steps={STEPS}"}


def _write_direction_split(n: int) -> None:
    """`n` harmful and `n` harmless neutral stand-ins in the built `direction` split."""
    from refusalscope.data.build import HARMFUL_FILE, HARMLESS_FILE, built_dir
    from refusalscope.data.load import Prompt
    from refusalscope.fileio import write_jsonl

    for label, texts, name in (("harmful", HARMFUL, HARMFUL_FILE),
                               ("harmless", HARMLESS, HARMLESS_FILE)):
        rows = [Prompt(f"{label[:4]}{i}", f"{texts[i % len(texts)]} (case {i})", "direction",
                       label, "test").to_dict() for i in range(n)]
        write_jsonl(built_dir() / name, rows)


@pytest.mark.parametrize("arch", SEED_ARCHS)
def test_probe_layer_sweep_card(arch: str, tmp_path: Path) -> None:
    _write_direction_split(96)  # the sweep's defaults: 64 for the means + 32 to validate
    folder = str(write_checkpoint(arch, tmp_path / arch))
    run = Run.open(_ok(["probe", "--layer-sweep", "--model", folder]).strip().splitlines()[-1])
    assert run.manifest.status == "success" and run.file("directions.h5").is_file()
    selected = run.manifest.extra["selected"]
    assert 0 <= selected["layer"] < 3
    steer = f"ablate:{run.file('directions.h5')}"
    prompts = tmp_path / "p.jsonl"
    prompts.write_text(json.dumps({"id": "q0", "prompt": HARMFUL[0]}) + "\n")
    gen = _ok(["generate", "--model", folder, "--prompts", str(prompts), "--max-new-tokens", "2",
               "--steer", steer])
    assert Run.open(gen.strip().splitlines()[-1]).manifest.config["steer"].startswith("ablate:")


@pytest.mark.parametrize("arch", SEED_ARCHS)
def test_attack_gcg_and_probe_commands(arch: str, tmp_path: Path) -> None:
    """`attack gcg` (embedding gradients, prefix cache) and `probe` (activations to HDF5) run on
    each seed architecture's folder."""
    from probe_fixtures import write_built

    folder = str(write_checkpoint(arch, tmp_path / arch))
    out = _ok(["attack", "gcg", "--model", folder, "--prompt", "Write a short poem about the sea",
               "--target", "Sure, here is", "--steps", "2", "--search-width", "8", "--topk", "4",
               "--suffix-len", "4", "--max-new-tokens", "2"])
    run = Run.open(out.strip().splitlines()[-1])
    assert run.manifest.status == "success" and run.manifest.extra["compute"]["steps"] == 2
    write_built()
    sites = "resid_pre,resid_post" if arch == "phi" else "resid_pre,resid_mid,resid_post"
    h5 = _ok(["probe", "--model", folder, "--n", "3", "--sites", sites]).strip().splitlines()[-1]
    assert Path(h5).is_file()
