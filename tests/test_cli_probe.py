import pytest
from typer.testing import CliRunner

from probe_fixtures import write_built
from refusalscope.cli.app import app
from refusalscope.interp.h5io import open_probe

runner = CliRunner()


@pytest.fixture
def probe_file(tiny_folder):
    write_built()
    res = runner.invoke(app, ["probe", "--model", str(tiny_folder), "--n", "3", "--layers", "0,2",
                              "--sites", "resid_pre,resid_post", "--batch-size", "2"])
    assert res.exit_code == 0, res.output
    return res.stdout.strip().splitlines()[-1]


def test_probe_extracts_and_compares(probe_file, tiny_folder, tmp_path):
    pf = open_probe(probe_file)
    assert pf.meta.layers == (0, 2) and pf.meta.sites == ("resid_pre", "resid_post")
    assert pf.acts("resid_post", 2).shape == (6, pf.meta.n_post, 64)
    res = runner.invoke(app, ["probe", "compare", probe_file, probe_file, "--site", "resid_post"])
    assert res.exit_code == 0, res.output
    assert "# Refusal-direction geometry (resid_post" in res.stdout
    assert "kept" in res.stdout  # the same file against itself: direction unchanged
    assert res.stdout.strip().endswith("geometry.png")
    res = runner.invoke(app, ["probe", "verify", probe_file, "--model", str(tiny_folder)])
    assert res.exit_code == 0, res.output
    assert "matches" in res.stdout


def _one_line_error(args, needle):
    res = runner.invoke(app, args)
    assert res.exit_code == 2, res.output
    err = res.stderr.strip()
    assert len(err.splitlines()) == 1 and "Traceback" not in res.output
    assert needle in err, err


def test_bad_input_one_line_exit_2(tiny_folder, tmp_path):
    from refusalscope.models.tiny import tiny_model

    write_built()
    m = str(tiny_folder)
    # the built test split holds 6 prompts per class: the default --n (128) is itself an error
    _one_line_error(["probe", "--model", m], "--n 128 is more than the 'direction' split holds: "
                    "6 harmful and 6 harmless prompts; use --n 6 or less")
    _one_line_error(["probe", "--model", m, "--n", "3", "--layers", "0-5"],
                    "layer 5 out of range")
    _one_line_error(["probe", "--model", m, "--sites", "resid_top"], "unknown site")
    _one_line_error(["probe", "--model", m, "--backend", "tl"], "unknown backend")
    _one_line_error(["probe"], "--model is required")
    phi, tok = tiny_model("phi")
    phi.save_pretrained(tmp_path / "phi")
    tok.save_pretrained(tmp_path / "phi")
    _one_line_error(["probe", "--model", str(tmp_path / "phi"), "--n", "3", "--sites",
                     "resid_mid"], "no resid_mid")
    bad = tmp_path / "bad.h5"
    bad.write_bytes(b"\x89HDF\r\n\x1a\n" + b"\0" * 64)
    _one_line_error(["probe", "compare", str(bad)], "not a readable HDF5 file")
    _one_line_error(["probe", "compare", str(tmp_path / "none.h5")], "no probe file")


def test_file_from_another_model_is_refused(probe_file, tmp_path):
    from refusalscope.models.tiny import tiny_model

    other, tok = tiny_model("llama", seed=9)  # same shape as tiny_folder, other weights
    other.save_pretrained(tmp_path / "other")
    tok.save_pretrained(tmp_path / "other")
    _one_line_error(["probe", "verify", probe_file, "--model", str(tmp_path / "other")],
                    "computed on another model")
    runs = sorted((tmp_path / "artifacts" / "runs").iterdir())
    assert len(runs) == 1  # refused before anything was written


def test_layer_sweep_forwards_to_probe_sweep(tiny_folder):
    # the sweep itself is tested with its own module; here: `probe --layer-sweep` reaches it
    # with probe's options (its own check on --n + --n-val against the 6-prompt split answers)
    write_built()
    res = runner.invoke(app, ["probe", "--layer-sweep", "--model", str(tiny_folder), "--n", "3"])
    assert res.exit_code == 2, res.output
    assert "--n-val" in res.stderr
    _one_line_error(["probe", "--layer-sweep", "--model", str(tiny_folder),
                     "--sites", "resid_pre,resid_post"], "single site")
