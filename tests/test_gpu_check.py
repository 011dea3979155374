"""`benchmarks/gpu_check.py` on the CPU (tiny shapes): the GPU check's code path cannot rot."""

from __future__ import annotations

import importlib.util
import json
import re
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]


@pytest.fixture(scope="module")
def gpu_check():  # type: ignore[no-untyped-def]
    sys.path.insert(0, str(ROOT / "benchmarks"))
    spec = importlib.util.spec_from_file_location("gpu_check", ROOT / "benchmarks/gpu_check.py")
    assert spec is not None and spec.loader is not None
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    return mod


def test_cpu_smoke_run_prints_every_comparison_and_writes_rates(  # type: ignore[no-untyped-def]
        gpu_check, tmp_path, capsys):
    from refusalscope.study.plan import load_rates

    rates_file = tmp_path / "rates.json"
    record = gpu_check.main(["--device", "cpu", "--shapes", "tiny-llama",
                             "--rates-out", str(rates_file)])
    out = capsys.readouterr().out
    # greedy fp32: the tool's loop and its --compile path give transformers' outputs exactly
    for path in ("transformers", "tool", "tool --compile"):
        assert re.search(rf"batch  1  {re.escape(path)} .* identical 2/2", out), out
        assert re.search(rf"batch  4  {re.escape(path)} .* identical 4/4", out), out
    assert out.count("  lora ") == 3 and "checkpointing off" in out
    m = re.search(r"max \|loss diff\| on identical candidates ([0-9.e+-]+)", out)
    assert m and float(m.group(1)) <= 1e-4, out  # same candidates, same losses
    assert re.search(r"plan      seed-plan: \d+ nodes, .* CPU-hours on cpu", out), out
    saved = json.loads(rates_file.read_text())
    assert saved == json.loads(json.dumps(record))
    (shape,) = saved["shapes"]
    assert set(shape["rates"]) == {"generate", "train", "gcg", "prefill"}
    assert [(e["batch"], e["seq"]) for e in shape["rates"]["train"]] == [(2, 32), (2, 64),
                                                                         (2, 16)]
    r = load_rates(rates_file)
    assert all(r.rate(w, 1e4, 64) > 0 for w in ("generate", "train", "gcg", "prefill"))


def test_card_table(gpu_check) -> None:  # type: ignore[no-untyped-def]
    names = [k for k, _, _ in gpu_check.card.__globals__["CARDS"]]
    assert names.index("H100 PCIe") < names.index("H100")  # the first match wins
    assert gpu_check.card("cpu")[1:] == (None, None)
