"""`manualgrad train`: the default run, plots, one-line errors, and exact resume after kills."""

from __future__ import annotations

import json
import os
import re
import shlex
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest

from manualgrad._cli.train import resume_command
from manualgrad._core.losses import output_activation
from manualgrad.cli import main

SRC = str(Path(__file__).resolve().parents[1] / "src")


def _train(capsys, *argv):
    rc = main(["train", "--quiet", *argv])
    out, err = capsys.readouterr()
    return rc, out, err


def _percent(row, out):
    match = re.search(rf"{row}\W+([\d.]+)%", out)
    assert match, out
    return float(match.group(1))


def test_default_run_reaches_90_percent_training_accuracy_on_flower(capsys, tmp_path):
    plot = tmp_path / "run.png"
    rc, out, _ = _train(capsys, "--plot", str(plot))
    assert rc == 0
    assert _percent("train accuracy", out) >= 90.0
    assert "test accuracy" in out and "steps/s" in out
    assert plot.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


def test_spiral_trains_a_softmax_network_from_one_hot_labels(capsys):
    rc, out, _ = _train(capsys, "--data", "spiral", "--epochs", "300", "--activations", "relu")
    assert rc == 0
    assert "softmax, loss ce" in out
    assert _percent("train accuracy", out) > 60.0  # chance is 33 %


def test_progress_starts_with_a_title_and_compiling_before_training(capsys):
    rc = main(["train", "--layers", "2,3,1", "--epochs", "2"])
    _, err = capsys.readouterr()
    assert rc == 0
    lines = err.splitlines()
    assert lines[0].startswith("manualgrad train: flower: 320 train / 80 test examples")
    assert lines[1] == "compiling…"


def test_a_tiny_data_set_reports_accuracy_as_counts(capsys):
    rc, out, _ = _train(capsys, "--m", "5", "--layers", "2,3,1", "--epochs", "2")
    assert rc == 0
    assert re.search(r"test accuracy\W+[\d.]+% \([01] of 1\)", out), out
    assert re.search(r"train accuracy\W+[\d.]+% \([0-4] of 4\)", out), out


def test_model_cnn_trains_a_conv_net_on_the_digits_images(capsys):
    rc, out, _ = _train(
        capsys, "--data", "digits", "--m", "200", "--model", "cnn", "--channels", "4",
        "--epochs", "10", "--lr", "0.05", "--activations", "relu",
    )  # fmt: skip
    assert rc == 0
    assert "images 8×8×1" in out and "8×8×1 → conv 4@3×3 → max 2×2 → 10" in out, out
    assert _percent("train accuracy", out) > 50.0  # chance is 10 %


def test_zero_devices_is_refused_by_the_option_parser(capsys):
    with pytest.raises(SystemExit) as exit_:
        main(["train", "--devices", "0"])
    assert exit_.value.code == 2
    assert "--devices: expected a positive int, got '0'" in capsys.readouterr().err


@pytest.mark.parametrize("loss", ["bce", "ce", "mse"])
def test_check_and_train_give_each_loss_the_same_output_activation(capsys, loss):
    assert main(["check", "--loss", loss, "--m", "20", "--json"]) == 0
    checked = json.loads(capsys.readouterr().out)["config"]["activations"][-1]
    rc, out, _ = _train(
        capsys, "--loss", loss, "--layers", f"2,3,{2 if loss == 'ce' else 1}", "--epochs", "1"
    )
    assert rc == 0
    assert checked == output_activation(loss) and f"tanh,{checked}, loss {loss}" in out


def test_resume_command_repeats_the_options_and_adds_resume():
    argv = ["train", "--checkpoint", "runs/a b", "--epochs", "9"]
    assert resume_command(argv) == "manualgrad train --checkpoint 'runs/a b' --epochs 9 --resume"
    assert resume_command([*argv, "--resume"]).count("--resume") == 1


def _write_npz(path, X, Y):
    np.savez(path, X=X, Y=Y)
    return str(path)


def _bad_inputs(tmp_path):
    X = np.random.default_rng(0).standard_normal((2, 20))
    Y = (X[:1] > 0).astype(float)
    nan_X = X.copy()
    nan_X[0, 3] = np.nan
    (tmp_path / "corrupt.npz").write_bytes(b"PK\x03\x04 not really")
    (tmp_path / "text.csv").write_text("x1,x2,y\n1,2,0\n1,two,1\n")
    (tmp_path / "pets.csv").write_text("x1,x2,y\n1,2,cat\n1,3,dog\n")
    (tmp_path / "rows.csv").write_text("x1,x2,y\n" + "".join(f"{i},{i},1\n" for i in range(9)))
    np.save(tmp_path / "array.npy", X)
    (tmp_path / "array.npy").rename(tmp_path / "array.npz")
    return {
        "missing file": (["--data", str(tmp_path / "missing.npz")], "missing.npz"),
        "missing csv": (  # what was looked for and where, no "[Errno 2]"
            ["--data", str(tmp_path / "missing.csv")],
            f"`--data {tmp_path / 'missing.csv'}`: no file '{tmp_path / 'missing.csv'}' (looked "
            "for relative to the folder you run in",
        ),
        "text labels": (["--data", str(tmp_path / "pets.csv")], "encode the classes as integers"),
        "npy named npz": (["--data", str(tmp_path / "array.npz")], "not a .npz file"),
        "csv rows as columns": (
            ["--data", str(tmp_path / "rows.csv"), "--examples", "columns"],
            "holds one example per line",
        ),
        "data set typo": (["--data", "flowr"], "did you mean 'flower'"),
        "data set case": (["--data", "Spiral"], "flower, moons, circles, spiral"),
        "m with a file": (["--data", str(tmp_path / "text.csv"), "--m", "5"], "`m` sets"),
        "zero epochs": (["--epochs", "0"], "`epochs` must be a positive int, got 0"),
        "batch larger than data": (["--batch-size", "100000"], "larger than the m = 320"),
        "zero hidden units": (["--layers", "2,0,1"], "hidden layer 1"),
        "unknown activation": (["--activations", "foo"], "unknown activation 'foo'"),
        "checkpoint-every alone": (["--checkpoint-every", "10"], "need --checkpoint DIR"),
        "lstm on features": (["--model", "lstm"], "--model lstm reads token ids (T, m)"),
        "corrupt npz": (["--data", str(tmp_path / "corrupt.npz")], "not a readable .npz"),
        "non-numeric csv": (["--data", str(tmp_path / "text.csv")], "'two' is not a number"),
        "nan": (["--data", _write_npz(tmp_path / "nan.npz", nan_X, Y)], "non-finite"),
        "bce labels": (["--data", _write_npz(tmp_path / "l.npz", X, Y * 2)], "{0, 1}"),
        "ce not one-hot": (
            ["--data", _write_npz(tmp_path / "c.npz", X, np.ones((2, 20))), "--loss", "ce"],
            "one-hot",
        ),
        "layers vs data": (["--layers", "3,4,1"], "--layers starts with 3"),
        "cnn on vectors": (["--model", "cnn"], "'flower' has feature vectors only"),
        "cnn with layers": (
            ["--data", "digits", "--model", "cnn", "--layers", "64,10"],
            "with --model cnn use --channels",
        ),
        "cnn bad channels": (
            ["--data", "digits", "--model", "cnn", "--channels", "8,x"],
            "--channels must be comma-separated ints, got '8,x'",
        ),
        "rows vs columns": (
            ["--data", _write_npz(tmp_path / "t.npz", X.T, Y), "--examples", "columns"],
            "--examples",
        ),
    }


BAD_INPUTS = [
    "missing file",
    "missing csv",
    "corrupt npz",
    "npy named npz",
    "non-numeric csv",
    "text labels",
    "csv rows as columns",
    "nan",
    "bce labels",
    "ce not one-hot",
    "layers vs data",
    "rows vs columns",
    "data set typo",
    "data set case",
    "m with a file",
    "zero epochs",
    "batch larger than data",
    "zero hidden units",
    "unknown activation",
    "checkpoint-every alone",
    "cnn on vectors",
    "cnn with layers",
    "cnn bad channels",
    "lstm on features",
]


@pytest.mark.parametrize("case", BAD_INPUTS)
def test_bad_input_gives_one_line_and_exit_code_2(capsys, tmp_path, case):
    argv, needle = _bad_inputs(tmp_path)[case]
    rc, _, err = _train(capsys, "--epochs", "1", *argv)
    assert rc == 2
    assert err.count("\n") == 1 and err.startswith("manualgrad train: error:"), err
    assert needle in err and "Traceback" not in err


def test_corrupt_or_mismatched_checkpoint_gives_one_line_and_exit_code_2(capsys, tmp_path):
    ckpt = tmp_path / "ckpt"
    tiny = ["--layers", "2,3,1", "--epochs", "2", "--checkpoint", str(ckpt)]
    assert _train(capsys, *tiny)[0] == 0
    rc, _, err = _train(capsys, *tiny, "--lr", "0.5", "--resume")
    assert rc == 2 and err.count("\n") == 1 and "lr: checkpoint 0.01, now 0.5" in err
    (ckpt / "checkpoint.npz").write_bytes(b"torn")
    rc, _, err = _train(capsys, *tiny, "--resume")
    assert rc == 2 and err.count("\n") == 1 and "corrupt or truncated" in err


# --- interrupted and resumed runs, in subprocesses ------------------------------------------

RUN = [
    "train", "--layers", "2,6,1", "--batch-size", "16", "--epochs", "1500",
    "--checkpoint-every", "100", "--float64", "--quiet", "--test-fraction", "0",
]  # fmt: skip


def _spawn(*argv):
    env = {**os.environ, "PYTHONPATH": SRC}
    cmd = [sys.executable, "-m", "manualgrad", *argv]
    return subprocess.Popen(cmd, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE)


def _final(ckpt):
    with np.load(Path(ckpt) / "checkpoint.npz") as f:
        return {k: f[k] for k in f.files}


@pytest.fixture(scope="session")  # once per worker, even when xdist interleaves modules
def uninterrupted(tmp_path_factory):
    ckpt = tmp_path_factory.mktemp("uninterrupted")
    proc = _spawn(*RUN, "--checkpoint", str(ckpt))
    _, err = proc.communicate(timeout=300)
    assert proc.returncode == 0, err.decode()
    return _final(ckpt)


@pytest.mark.slow
@pytest.mark.xdist_group("uninterrupted_run")  # its module fixture runs once
@pytest.mark.parametrize("sig", [signal.SIGINT, signal.SIGKILL], ids=["SIGINT", "SIGKILL"])
def test_killed_and_resumed_run_ends_with_exactly_the_uninterrupted_params(
    tmp_path, uninterrupted, sig
):
    ckpt = tmp_path / "ckpt"
    proc = _spawn(*RUN, "--checkpoint", str(ckpt))
    deadline = time.monotonic() + 240
    while not (ckpt / "checkpoint.npz").exists():
        assert proc.poll() is None, proc.communicate()[1].decode()
        assert time.monotonic() < deadline
        time.sleep(0.005)
    proc.send_signal(sig)
    _, err = proc.communicate(timeout=120)
    assert proc.returncode == (130 if sig == signal.SIGINT else -signal.SIGKILL), err.decode()
    saved = json.loads(str(_final(ckpt)["meta"]))
    assert 0 < saved["epoch"] < 1500  # really stopped mid-run

    if sig == signal.SIGINT:  # resume with the command it printed
        command = shlex.split(err.decode().splitlines()[-1])
        assert command[0] == "manualgrad" and command[-1] == "--resume"
        resumed = _spawn(*command[1:])
    else:
        resumed = _spawn(*RUN, "--checkpoint", str(ckpt), "--resume")
    _, err = resumed.communicate(timeout=300)
    assert resumed.returncode == 0, err.decode()
    final = _final(ckpt)
    assert json.loads(str(final["meta"])) == json.loads(str(uninterrupted["meta"]))
    assert set(final) == set(uninterrupted) and any(k.startswith("params/") for k in final)
    for k in set(final) - {"meta"}:
        np.testing.assert_array_equal(final[k], uninterrupted[k], err_msg=k)
