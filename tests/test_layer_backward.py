"""`mg.checking.layer_backward`: the course's conv, pool, RNN and LSTM backward functions.

The oracle is jax.vjp of each layer's forward written with jax's primitives
(`_layer_oracles`); the student files in tests/student_gallery/ (cnn_step_by_step.py,
rnn_step_by_step.py) are written the way students write the loops, one correct version and
one per classic mistake. Each must get the right verdict and the diagnosis of its mistake.
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest

from manualgrad._errors import ConfigError
from manualgrad.checking._layer_mistakes import LAYER_MISTAKES
from manualgrad.checking.backward import load_function
from manualgrad.checking.layer_backward import check_layer_backward, layer_cases, layer_kind
from manualgrad.cli import main

ROOT = Path(__file__).resolve().parents[1]
GALLERY = ROOT / "tests" / "student_gallery"
CNN, RNN = GALLERY / "cnn_step_by_step.py", GALLERY / "rnn_step_by_step.py"


@pytest.mark.parametrize(
    ("path", "name"),
    [(CNN, "conv_backward"), (CNN, "pool_backward"), (RNN, "rnn_backward"),
     (RNN, "lstm_backward")],
    ids=["conv", "pool", "rnn", "lstm"],
)  # fmt: skip
def test_a_correct_course_backward_passes_every_configuration(path, name):
    report = check_layer_backward(load_function(f"{path}:{name}"))
    assert report.passed and report.kind == name[:4].rstrip("_"), report.format()
    assert max(f.difference for r in report.results for f in r.findings) <= 1e-13


def test_the_configurations_cover_strides_pads_windows_and_modes():
    conv = [c.args[1][3] for c in layer_cases("conv")]
    assert {(h["stride"], h["pad"]) for h in conv} == {(1, 0), (2, 2), (1, 2), (2, 0)}
    W_shapes = [c.args[1][1].shape for c in layer_cases("conv")]
    assert {f for f, *_ in W_shapes} == {2, 3}
    assert sum(n_C_prev == n_C for *_, n_C_prev, n_C in W_shapes) == 2  # W swapped runs there
    pool = [(c.args[1][1]["f"], c.args[1][1]["stride"], c.args[2]) for c in layer_cases("pool")]
    assert {mode for *_, mode in pool} == {"max", "average"} and {f for f, *_ in pool} == {2, 3}


# (file, function, the diagnosis expected)
BUGGY = [
    (CNN, "conv_backward_pad_not_cropped", {"conv_pad_not_cropped"}),
    (CNN, "conv_backward_stride_ignored", {"conv_stride_ignored"}),
    (CNN, "conv_backward_W_swapped", {"conv_W_channels_swapped"}),
    (CNN, "conv_backward_db_assigned", {"conv_db_not_summed"}),
    (CNN, "conv_backward_over_m", {"conv_1_over_m"}),
    (CNN, "conv_backward_dA_assigned", {"conv_dA_overwritten"}),
    (CNN, "pool_backward_max_as_average", {"pool_max_as_average"}),
    (CNN, "pool_backward_assigned", {"pool_overwritten"}),
    (CNN, "pool_backward_no_mask", {"pool_mask_not_used"}),
    (CNN, "pool_backward_not_divided", {"pool_average_not_divided"}),
    (RNN, "rnn_backward_not_accumulated", {"bptt_not_accumulated"}),
    (RNN, "rnn_backward_not_carried", {"bptt_da_prev_not_carried"}),
    (RNN, "rnn_backward_tanh_twice", {"rnn_tanh_derivative_at_a"}),
    (RNN, "lstm_backward_dc_not_carried", {"lstm_dc_not_carried"}),
    (RNN, "lstm_backward_not_accumulated", {"bptt_not_accumulated"}),
]


@pytest.mark.parametrize(("path", "name", "expected"), BUGGY, ids=[b[1] for b in BUGGY])
def test_each_classic_mistake_is_named(path, name, expected):
    report = check_layer_backward(load_function(f"{path}:{name}"))
    assert not report.passed
    assert report.mistakes() == expected, report.format()


def test_the_mistakes_hit_the_keys_they_should():
    conv = check_layer_backward(load_function(f"{CNN}:conv_backward_pad_not_cropped"))
    finding = conv.results[1].findings[0]  # stride 2, pad 2: dA_prev of the padded shape
    assert (finding.key, finding.shape, finding.expected_shape) == (
        "dA_prev",
        (2, 9, 9, 3),
        (2, 5, 5, 3),
    )
    assert all(f.passed for r in conv.results for f in r.findings if f.key != "dA_prev")
    rnn = check_layer_backward(load_function(f"{RNN}:rnn_backward_not_accumulated"))
    failing = {f.key for r in rnn.results for f in r.findings if not f.passed}
    assert failing == {"dWax", "dWaa", "dba"}  # dx and da0 are right
    swapped = check_layer_backward(load_function(f"{CNN}:conv_backward_W_swapped"))
    assert [r.error is None for r in swapped.results] == [False, True, True, False]


def test_every_layer_mistake_of_the_catalogue_has_a_gallery_version():
    covered = set().union(*(expected for *_, expected in BUGGY))
    assert {m.id for m in LAYER_MISTAKES} == covered


def test_the_kind_comes_from_the_name():
    assert [layer_kind(n) for n in ("conv_backward", "NN.pool_backward_v2", "rnn_backward",
                                    "lstm_backward", "L_model_backward")] == [
        "conv", "pool", "rnn", "lstm", None]  # fmt: skip


@pytest.mark.parametrize(
    ("func", "kind", "message"),
    [
        (lambda dZ: dZ, "conv", r"cannot be called as f\(dZ, cache\)"),
        (lambda dZ, cache: dZ, "conv", r"`f` returned ndarray; expected the course's \(dA_prev"),
        (lambda da, caches: [da], "rnn", r"`f` returned list; expected the course's gradients"),
        (lambda a, b: a, None, r"`f` is not one of the course's layer backward functions"),
    ],
    ids=["signature", "conv-not-a-tuple", "rnn-not-a-dict", "unknown-kind"],
)
def test_what_cannot_be_checked_is_one_config_error(func, kind, message):
    func.__name__ = "f"
    with pytest.raises(ConfigError, match=message):
        check_layer_backward(func, kind=kind)


def test_the_cli_checks_them_by_name_in_one_process(capsys, monkeypatch):
    monkeypatch.chdir(ROOT)
    monkeypatch.setenv("COLUMNS", "120")
    cnn, rnn = (
        "tests/student_gallery/cnn_step_by_step.py",
        "tests/student_gallery/rnn_step_by_step.py",
    )
    assert main(["check", "--against", f"{cnn}:conv_backward"]) == 0
    out = capsys.readouterr().out
    assert (
        "conv_backward (conv, the course's layout) against jax.vjp, float64, 4 configurations"
        in out
    )
    assert out.strip().endswith("PASS: every key of 4 configurations agrees with jax.vjp")
    assert main(["check", "--against", f"{cnn}:conv_backward_stride_ignored"]) == 1
    out = " ".join(capsys.readouterr().out.split())
    assert "FAIL: 2 of 4 configurations disagree with jax.vjp:" in out
    assert "the windows start at h and w, not at stride·h and stride·w" in out
    assert main(["check", "--json", "--against", f"{rnn}:lstm_backward_dc_not_carried"]) == 1
    data = json.loads(capsys.readouterr().out)
    assert data["convention"] == "lstm" and not data["passed"]
    assert data["summary"][0].startswith("dx, da0, dWf, dbf, dWi, dbi, dWc, dbc")
    assert main(["check", "--against", f"{rnn}:rnn_backward", "--l2", "0.7"]) == 2
    assert "`--l2` does not apply to the course's rnn_backward" in capsys.readouterr().err
    assert main(["check", "--against", f"{cnn}:_conv_backward", "--convention", "conv"]) == 0


def test_the_arguments_are_copies():
    def writes_into_its_arguments(dZ, cache):
        A_prev, W, b, _ = cache
        A_prev[...] = 0.0
        dZ[...] = 0.0
        return np.zeros_like(A_prev), np.zeros_like(W), np.zeros_like(b)

    writes_into_its_arguments.__name__ = "conv_backward"
    check_layer_backward(writes_into_its_arguments)
    assert np.any(layer_cases("conv")[0].args[0])  # the cached dZ is intact


def test_the_docs_page_lists_every_layer_mistake():
    text = (ROOT / "docs" / "check_your_backward.md").read_text(encoding="utf-8")
    assert [m.label for m in LAYER_MISTAKES if f"| {m.label} |" not in text] == []


@pytest.mark.parametrize(
    "name", ["conv_backward", "pool_backward", "rnn_backward", "lstm_backward"]
)
def test_manualgrads_own_course_functions_pass(name):
    from manualgrad import course

    report = check_layer_backward(getattr(course, name))  # jax.numpy code, run in float64
    assert report.passed, report.format()


def test_a_float32_result_is_told_to_compute_in_float64():
    from manualgrad import course

    def conv_backward(dZ, cache):
        dA_prev, dW, db = course.conv_backward(dZ, cache)
        return np.asarray(dA_prev, np.float32), dW, db

    report = check_layer_backward(conv_backward)
    assert report.mistakes() == {"float32"}
    assert report.summary() == [
        "dA_prev: computed in float32 (about 1e-7 relative): compute in float64, as the check "
        "does — numpy's default, or jax.numpy under jax.enable_x64"
    ]
