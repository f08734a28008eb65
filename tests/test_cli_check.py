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


@pytest.mark.parametrize("seed", ["1", "2", "3"])
@pytest.mark.parametrize("keep_prob", ["0.5", "0.7", "0.9"])
def test_check_passes_under_dropout_for_every_rate_and_seed(capsys, keep_prob, seed):
    # 2 tanh units before the relu layer: an example loses both with probability
    # (1 − keep_prob)², and then its Z2 is exactly b2 = 0, a tie of relu
    code, data = _json(capsys, "--layers", "2,2,3,1", "--keep-prob", keep_prob, "--seed", seed)
    assert code == 0 and data["passed"] is True, data
    for row in data["rows"]:
        assert row["autodiff"] <= 1e-12


def test_entries_at_a_relu_kink_are_reported_and_judged_by_jax_grad_alone(capsys):
    code, data = _json(capsys, "--layers", "2,2,3,1", "--keep-prob", "0.5")
    assert code == 0
    at_kink = {row["name"]: row["at_kink"] for row in data["rows"]}
    assert at_kink["b2"] == 3  # every b2 entry moves the Z2 = 0 of the dropped examples
    assert at_kink["W1"] == at_kink["W3"] == 0
    b2 = next(row for row in data["rows"] if row["name"] == "b2")
    assert b2["finite_difference"] is None and b2["autodiff"] <= 1e-12


def test_check_fails_with_exit_1_and_names_a_wrong_gradient(capsys, monkeypatch):
    real = mg.Network.value_and_grad

    def wrong_value_and_grad(net, *args):
        cost, grads = real(net, *args)
        return cost, {**grads, "W2": grads["W2"] * 1.001}

    monkeypatch.setattr(mg.Network, "value_and_grad", wrong_value_and_grad)
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


# --------------------------------------------------------------------------- check --against

REFS = "tests/backward_references.py"


def test_against_a_correct_backward_exits_0_and_says_so(capsys, monkeypatch):
    monkeypatch.chdir(ROOT)
    code = main(["check", "--against", REFS])
    out = capsys.readouterr().out
    assert code == 0
    assert "L_model_backward (course convention, loss bce) against jax.grad" in out
    assert out.strip().splitlines()[-1] == "PASS: every key of 5 networks agrees with jax.grad"


def test_against_a_buggy_backward_exits_1_with_the_table_and_the_diagnosis(capsys, monkeypatch):
    monkeypatch.chdir(ROOT)
    code = main(["check", "--against", f"{REFS}:L_model_backward_dW_transposed"])
    out = " ".join(capsys.readouterr().out.split())  # rich wraps at the terminal's width
    assert code == 1
    assert "L_model_backward_dW_transposed (course convention" in out
    assert "│ dW1 │ 5×4 (want 4×5) │ – │ FAIL │ transposed (2) │" in out
    assert "FAIL: 4 of 5 networks disagree with jax.grad:" in out  # a 1×1 dW is its own ᵀ
    assert "dW[l] is transposed: formula (2), dW[l] = (1/m) dZ[l] A[l-1]ᵀ" in out


def test_against_in_the_core_convention_with_json(capsys, monkeypatch):
    monkeypatch.chdir(ROOT)
    argv = ["check", "--against", f"{REFS}:grads_missing_1_over_m", "--convention", "core"]
    code = main([*argv, "--json", "--seed", "4"])
    data = json.loads(capsys.readouterr().out)
    assert code == 1 and data["passed"] is False and data["convention"] == "core"
    assert [n["name"] for n in data["networks"]][:3] == ["course", "square", "relu tie"]
    keys = {k["key"]: k for k in data["networks"][0]["keys"]}
    assert keys["dW1"]["mistakes"] == ["dW_missing_1_over_m"] and keys["db1"]["passed"]


def test_against_with_mse(capsys, monkeypatch):
    monkeypatch.chdir(ROOT)
    assert main(["check", "--against", f"{REFS}:L_model_backward_mse", "--loss", "mse"]) == 0


GALLERY = "tests/student_gallery"


def test_against_dA_keys_shifted_by_one_checks_them_and_says_so(capsys, monkeypatch):
    monkeypatch.chdir(ROOT)
    code = main(["check", "--against", f"{GALLERY}/step_by_step.py:L_model_backward_shifted_sign"])
    out = " ".join(capsys.readouterr().out.split())
    assert code == 1
    assert "your dA3 holds what dA2 should (every dA key is shifted by one" in out
    assert "dZ[l] has the wrong sign" in out  # the bug the key error used to hide


def test_against_a_dotted_name_checks_a_staticmethod(capsys, monkeypatch):
    monkeypatch.chdir(ROOT)
    assert main(["check", "--against", f"{GALLERY}/step_by_step.py:NN.L_model_backward"]) == 0
    assert "NN.L_model_backward (course convention" in capsys.readouterr().out


def test_against_with_l2_checks_the_regularized_backward(capsys, monkeypatch):
    monkeypatch.chdir(ROOT)
    spec = f"{GALLERY}/regularization.py:L_model_backward_with_regularization"
    assert main(["check", "--against", spec, "--l2", "0.7"]) == 0
    out = " ".join(capsys.readouterr().out.split())  # rich wraps at the terminal's width
    assert "(course convention, loss bce, L2 λ = 0.7) against jax.grad" in out
    assert main(["check", "--against", spec]) == 2  # it takes lambd: said so, not a FAIL
    err = capsys.readouterr().err
    assert "cannot be called as L_model_backward_with_regularization(AL, Y, caches)" in err


def test_against_json_stays_json_when_the_file_prints(capsys, monkeypatch):
    monkeypatch.chdir(ROOT)
    code = main(["check", "--json", "--against", f"{GALLERY}/prints_at_import.py"])
    data = json.loads(capsys.readouterr().out)
    assert code == 0 and data["passed"] is True
    assert data["printed"].startswith("Building your Deep Neural Network: Step by Step\ndW1 = ")


@pytest.mark.parametrize(
    ("argv", "message"),
    [
        (["--against", "tests/no_such_file.py"], "no such file 'tests/no_such_file.py'"),
        (["--against", f"{REFS}:nope"], "'backward_references.py' defines no function 'nope'"),
        (["--against", f"{REFS}:_returning_list"], "returned list on the network 'course'"),
        (["--against", REFS, "--layers", "2,3,1"], "`--layers` does not apply to `--against`"),
        (["--against", REFS, "--keep-prob", "0.5"], "convention's arguments have no dropout masks"),
        (["--against", REFS, "--convention", "torch"], "unknown convention 'torch'"),
        (["--against", REFS, "--loss", "ce"], "loss 'ce' cannot be checked here"),
        (["--convention", "core"], "`--convention` needs `--against"),
        (["--against", f"{GALLERY}/trains_at_import.py"],
         'plotting) under `if __name__ == "__main__":`'),
    ],
    ids=["no-file", "no-function", "not-a-dict", "layers", "keep-prob", "convention", "loss",
         "convention-alone", "top-level-work"],
)  # fmt: skip
def test_against_errors_exit_2_with_one_line(capsys, monkeypatch, argv, message):
    monkeypatch.chdir(ROOT)
    code = main(["check", *argv])
    captured = capsys.readouterr()
    assert code == 2
    lines = captured.err.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("manualgrad check: error:")
    assert message in lines[0]
    assert captured.out == ""


def test_against_the_flat_cache_functions_with_keep_prob_and_l2(capsys, monkeypatch):
    monkeypatch.chdir(ROOT)
    flat = f"{GALLERY}/flat_cache.py"
    assert main(["check", "--against", f"{flat}:backward_propagation_with_dropout",
                 "--keep-prob", "0.8"]) == 0  # fmt: skip
    out = " ".join(capsys.readouterr().out.split())
    assert "(flat convention, loss bce, dropout keep_prob = 0.8) against jax.grad" in out
    assert "network 'course': layers 2,20,3,1 (relu, relu, sigmoid), m = 8: 11 keys" in out
    spec = f"{flat}:backward_propagation_with_dropout_no_mask"
    assert main(["check", "--json", "--against", spec, "--keep-prob", "0.8"]) == 1
    data = json.loads(capsys.readouterr().out)
    assert data["convention"] == "flat" and data["keep_prob"] == 0.8
    assert data["summary"][0].startswith("dA2, dA1: dA[l-1] is divided by keep_prob but not masked")
    spec = f"{flat}:backward_propagation_with_regularization_half"
    assert main(["check", "--against", spec, "--l2", "0.7"]) == 1
    assert "half the L2 term" in capsys.readouterr().out
    assert main(["check", "--against", f"{flat}:backward_propagation_with_dropout"]) == 2
    assert "it takes keep_prob: check it with dropout" in capsys.readouterr().err
