"""`manualgrad check`, in-process through `manualgrad.cli.main` and once as a subprocess."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import jax
import pytest

import manualgrad as mg
from manualgrad.cli import main

ROOT = Path(__file__).resolve().parents[1]
SMALL = ["--m", "24"]  # a few seconds on 2 cores; the default m is 400


def _json(capsys, *argv):
    code = main(["check", *SMALL, "--json", *argv])
    return code, json.loads(capsys.readouterr().out)


def test_check_json_parses_and_every_row_is_under_both_thresholds(capsys):
    code, data = _json(capsys)
    assert code == 0 and data["passed"] is True
    assert data["config"]["layers"] == [2, 8, 4, 1]
    assert data["config"]["activations"] == ["tanh", "relu", "sigmoid"]
    assert [row["name"] for row in data["rows"]] == ["W1", "b1", "W2", "b2", "W3", "b3"]
    for row in data["rows"]:
        assert row["autodiff"] <= 1e-12 and row["finite_difference"] <= 1e-6
    assert data["rows"][2]["shape"] == [4, 8]
    assert jax.numpy.zeros(1).dtype == jax.numpy.float32  # float64 was scoped to the check


@pytest.mark.parametrize(
    "argv",
    [
        ["--loss", "ce"],
        [
            *("--layers", "2,3,3,3,1", "--activations", "leaky_relu,sigmoid,linear,sigmoid"),
            *("--loss", "mse", "--l2", "0.3", "--keep-prob", "0.7"),
        ],
    ],
    ids=["ce-softmax", "deeper-mse-l2-dropout"],
)
def test_check_passes_other_losses_and_architectures(capsys, argv):
    code, data = _json(capsys, *argv)
    assert code == 0 and data["passed"] is True, data


def test_check_fails_with_exit_1_and_names_a_wrong_gradient(capsys, monkeypatch):
    real = mg.value_and_grad

    def wrong_value_and_grad(*args, **kwargs):
        cost, grads = real(*args, **kwargs)
        return cost, {**grads, "W2": grads["W2"] * 1.001}

    monkeypatch.setattr(mg, "value_and_grad", wrong_value_and_grad)
    code, data = _json(capsys)
    assert code == 1
    assert data["passed"] is False and data["worst"] == "W2"
    assert [row["name"] for row in data["rows"] if not row["passed"]] == ["W2"]


@pytest.mark.parametrize(
    ("argv", "message"),
    [
        (["--layers", "3,4,1"], "n_x = 2"),
        (["--layers", "2,x,1"], "comma-separated ints"),
        (["--loss", "hinge"], "unknown loss"),
        (["--activations", "relu,sigmoid"], "takes 1 name (every hidden layer"),
        (["--activations", "relu,swish,sigmoid"], "unknown activation"),
        (["--activations", "foo"], "unknown activation 'foo'"),
        (["--loss", "ce", "--activations", "tanh,relu,sigmoid"], "softmax"),
        (["--keep-prob", "1.5"], "keep_prob"),
        (["--l2", "-1"], "l2"),
        (["--m", "0"], "--m"),
    ],
    ids=[
        "n_x",
        "layers-not-ints",
        "loss",
        "activation-count",
        "activation-name",
        "activation-name-alone",
        "ce-needs-softmax",
        "keep-prob",
        "negative-l2",
        "m",
    ],
)
def test_bad_options_exit_2_with_one_line_on_stderr(capsys, argv, message):
    code = main(["check", *argv])
    captured = capsys.readouterr()
    assert code == 2
    lines = captured.err.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("manualgrad check: error:")
    assert message in lines[0]
    assert captured.out == ""


def test_python_dash_m_manualgrad_check_runs_in_a_subprocess():
    env = {**os.environ, "PYTHONPATH": str(ROOT / "src")}
    proc = subprocess.run(
        [sys.executable, "-m", "manualgrad", "check", *SMALL],
        cwd=ROOT,
        env=env,
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert proc.returncode == 0, proc.stderr
    rows = [line for line in proc.stdout.splitlines() if line.lstrip("│ ").startswith(("W", "b"))]
    assert [row.split()[1] for row in rows] == ["W1", "b1", "W2", "b2", "W3", "b3"]
    assert all("PASS" in row for row in rows)
    assert "PASS: all 6 parameters agree" in proc.stdout
