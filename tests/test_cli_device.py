"""`--device cuda` on every model-loading command: without a visible CUDA device it is one
`error:` line and exit 2 before any work (with one, the same options load bf16 on the GPU)."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch
from typer.testing import CliRunner

from refusalscope.cli.app import app
from refusalscope.errors import UserError
from refusalscope.models.handle import RuntimeOptions

COMMANDS = [
    ["generate", "--model", "{m}", "--n", "2"],
    ["attack", "lora", "--model", "{m}", "--n-data", "2", "--steps", "1"],
    ["attack", "gcg", "--model", "{m}", "--steps", "1"],
    ["attack", "autodan", "--model", "{m}"],
    ["attack", "template", "--model", "{m}"],
    ["defend", "steer", "--model", "{m}", "--directions", "{d}"],
    ["defend", "tar", "--model", "{m}"],
    ["probe", "--model", "{m}"],
    ["probe", "sweep", "--model", "{m}"],
    ["steer", "eval", "--model", "{m}", "--directions", "{d}"],
    ["steer", "orthogonalize", "--model", "{m}", "--directions", "{d}", "--out", "{o}"],
    ["serve", "--model", "{m}"],
]


@pytest.mark.skipif(torch.cuda.is_available(), reason="checks the no-GPU message")
@pytest.mark.parametrize("argv", COMMANDS, ids=lambda a: " ".join(a[:2]))
def test_device_cuda_without_a_gpu_is_a_user_error(argv: list[str], tiny_folder: Path,
                                                   tmp_path: Path) -> None:
    d = tmp_path / "directions.h5"
    d.write_bytes(b"")
    args = [a.format(m=tiny_folder, d=d, o=tmp_path / "out") for a in argv]
    res = CliRunner().invoke(app, [*args, "--device", "cuda"])
    assert res.exit_code == 2, res.output
    assert "error: --device cuda: torch sees no CUDA device" in res.output


def test_device_and_dtype_defaults() -> None:
    assert RuntimeOptions("cpu").resolved_dtype() == torch.float32
    assert RuntimeOptions("cpu", "bfloat16").resolved_dtype() == torch.bfloat16
    for bad in ("gpu", "cpu:0", "cuda:x"):
        with pytest.raises(UserError, match="unknown --device"):
            RuntimeOptions(bad)
    with pytest.raises(UserError, match="unknown dtype"):
        RuntimeOptions("cpu", "fp8")
    if torch.cuda.is_available():  # bf16 by default on the GPU
        assert RuntimeOptions("cuda").resolved_dtype() == torch.bfloat16
        assert RuntimeOptions("auto").resolved_device() == "cuda"
