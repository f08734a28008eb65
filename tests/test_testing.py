"""`mg.checking.backward` and `mg.checking._mistakes`: checking a user's own backward pass.

The oracle is the set of numpy reference implementations in tests/backward_references.py:
one correct `L_model_backward` (and `grads`, in the core convention) and one version per
classic mistake, each written the way a student would write it. Every version must get
the right verdict and exactly the diagnosis of its mistake.
"""

from __future__ import annotations

import re
import textwrap
import tomllib
from pathlib import Path

import jax
import jax.numpy as jnp
import numpy as np
import pytest

import backward_references as refs
import manualgrad as mg
from helpers import same_printout
from manualgrad import course
from manualgrad._errors import ConfigError, DTypeError, ShapeError
from manualgrad.checking._mistakes import MISTAKES
from manualgrad.checking.backward import (
    BackwardCase,
    assert_backward_matches,
    check_backward,
    default_cases,
    load_function,
)
from manualgrad.cli import main

ROOT = Path(__file__).resolve().parents[1]
REFS = ROOT / "tests" / "backward_references.py"

# ------------------------------------------------------------------------- correct versions


@pytest.mark.parametrize(
    ("func", "convention", "loss"),
    [
        (refs.L_model_backward, "course", "bce"),
        (refs.L_model_backward_mse, "course", "mse"),
        (refs.grads, "core", "bce"),
    ],
    ids=["course-bce", "course-mse", "core-bce"],
)
def test_a_correct_numpy_backward_passes_every_key_of_every_network(func, convention, loss):
    report = check_backward(func, convention=convention, loss=loss)
    assert report.passed, report.format()
    assert len(report.results) == len(default_cases())
    differences = [f.difference for r in report.results for f in r.findings]
    assert max(differences) <= 1e-13  # measured ≈ 1e-15; the threshold is 1e-10
    assert {f.key for f in report.results[0].findings} == {
        *(f"dW{l}" for l in (1, 2, 3)),
        *(f"db{l}" for l in (1, 2, 3)),
        *((f"dA{l}" for l in (0, 1, 2)) if convention == "course" else ()),
    }


def test_manualgrads_course_backward_passes_the_check():
    assert_backward_matches(course.L_model_backward)


def test_manualgrads_core_backward_passes_the_check_in_the_core_convention():
    def grads(params, X, Y):
        n_layers = len(params) // 2
        activations = ("relu",) * (n_layers - 1) + ("sigmoid",)
        return mg.network(activations, "bce").value_and_grad(params, X, Y)[1]

    assert_backward_matches(grads, convention="core")


# ------------------------------------------------------------------- one version per mistake

# (function in backward_references, loss, the diagnosis expected); `grads_…` are core-convention
BUGGY = [
    ("L_model_backward_missing_1_over_m", "bce", {"dW_missing_1_over_m", "db_missing_1_over_m"}),
    ("L_model_backward_dW_1_over_m_twice", "bce", {"dW_1_over_m_twice"}),
    ("L_model_backward_db_1_over_m_twice", "bce", {"db_1_over_m_twice"}),
    ("L_model_backward_dW_transposed", "bce", {"dW_transposed"}),
    ("L_model_backward_dW_sign", "bce", {"dW_sign"}),
    ("L_model_backward_db_without_keepdims", "bce", {"db_without_keepdims"}),
    ("L_model_backward_db_wrong_axis", "bce", {"db_wrong_axis"}),
    ("L_model_backward_db_summed_over_everything", "bce", {"db_summed_over_everything"}),
    ("L_model_backward_db_sign", "bce", {"db_sign"}),
    ("L_model_backward_dA_with_1_over_m", "bce", {"dA_with_1_over_m", "follows"}),
    ("L_model_backward_dA_without_transpose", "bce", {"dA_without_transpose", "follows"}),
    ("L_model_backward_dA_from_W_below", "bce", {"dA_from_W_below", "follows"}),
    ("L_model_backward_dA_sign", "bce", {"dA_sign", "follows"}),
    ("L_model_backward_sign", "bce", {"dz_sign", "follows"}),
    ("L_model_backward_without_derivative", "bce", {"dz_without_derivative"}),
    ("L_model_backward_sigmoid_on_relu", "bce", {"sigmoid_derivative_on_relu"}),
    ("L_model_backward_relu_on_sigmoid", "bce", {"relu_derivative_on_sigmoid", "follows"}),
    ("L_model_backward_derivative_at_A", "bce", {"derivative_at_A", "follows"}),
    ("L_model_backward_Z_one_minus_Z", "bce", {"a_one_minus_a_at_Z", "follows"}),
    ("L_model_backward_relu_at_zero", "bce", {"relu_derivative_at_zero"}),
    ("L_model_backward_fused_as_dA", "bce", {"fused_dZ_used_as_dA", "follows"}),
    ("L_model_backward_mse_fused", "mse", {"fused_dZ_with_wrong_loss", "follows"}),
    ("grads_missing_1_over_m", "bce", {"dW_missing_1_over_m"}),
    ("grads_sigmoid_on_relu", "bce", {"sigmoid_derivative_on_relu"}),
    ("grads_dA_from_W_below", "bce", {"dA_from_W_below"}),
]


@pytest.mark.parametrize(
    ("name", "loss", "expected"),
    BUGGY,
    ids=[n.replace("L_model_backward_", "").replace("grads_", "core-") for n, *_ in BUGGY],
)
def test_each_buggy_version_fails_with_the_diagnosis_of_its_mistake(name, loss, expected):
    convention = "core" if name.startswith("grads") else "course"
    report = check_backward(getattr(refs, name), convention=convention, loss=loss)
    assert not report.passed
    assert report.mistakes() == expected, report.format()


def test_every_mistake_of_the_catalogue_has_a_buggy_version():
    covered = set().union(*(expected for _, _, expected in BUGGY + BUGGY_L2 + BUGGY_FLAT))
    assert {m.id for m in MISTAKES} <= covered


def test_a_diagnosis_names_the_formula_and_the_layer():
    report = check_backward(refs.L_model_backward_missing_1_over_m, cases=default_cases()[:1])
    row = next(f for f in report.results[0].findings if f.key == "dW2")
    assert row.text == (
        "dW[2] is m times too large: the 1/m of formula (2) is missing — "
        "dW[2] = (1/m) dZ[2] A[1]ᵀ (m = 8)"
    )


def test_a_relu_derivative_at_zero_shows_only_on_the_network_with_a_tie():
    report = check_backward(refs.L_model_backward_relu_at_zero)
    failing = [r.case.name for r in report.results if not r.passed]
    assert failing == ["relu tie"]
    assert all(r.case.tie == (not r.passed) for r in report.results)


def test_a_dA_from_the_wrong_layer_runs_on_the_square_network_and_raises_elsewhere():
    report = check_backward(refs.L_model_backward_dA_from_W_below)
    square = next(r for r in report.results if r.case.name == "square")
    assert square.error is None and not square.passed
    course_net = next(r for r in report.results if r.case.name == "course")
    assert course_net.error is not None and course_net.error.startswith("ValueError")
    assert "backward_references.py, line" in course_net.error


def test_the_layers_below_a_mistake_follow_from_it():
    report = check_backward(refs.L_model_backward_sign, cases=default_cases()[:1])
    diagnosis = {f.key: f.mistakes for f in report.results[0].findings}
    assert diagnosis["dW3"] == diagnosis["db3"] == diagnosis["dA2"] == ("dz_sign",)
    assert {diagnosis[k] for k in ("dW2", "db2", "dA1", "dW1", "db1", "dA0")} == {("follows",)}


def _scaled(func, key, factor):
    def backward(AL, Y, caches):
        grads = func(AL, Y, caches)
        return {**grads, key: grads[key] * factor}

    return backward


def test_an_unknown_mistake_names_the_first_layer_to_go_wrong():
    func = refs.L_model_backward
    for key in ("dW2", "db2", "dA1"):  # all of layer 2: its dZ[2] is 1.5 × the right one
        func = _scaled(func, key, 1.5)
    report = check_backward(func, cases=default_cases()[:1])
    row = next(f for f in report.results[0].findings if not f.passed)
    assert row.key == "dW2" and row.mistakes == ("unknown",)
    assert row.text is not None
    assert row.text.startswith("it is 1.5 × the right value; no known mistake fits")
    assert "layer 2 is the first to go wrong" in row.text


def test_only_dW_wrong_is_said_to_be_in_formula_2():
    report = check_backward(_scaled(refs.L_model_backward, "dW2", 1.5), cases=default_cases()[:1])
    row = next(f for f in report.results[0].findings if not f.passed)
    assert row.key == "dW2" and row.mistakes == ("unknown",)
    assert row.text == (
        "it is 1.5 × the right value; no known mistake fits; db2 and dA1 agree, so dZ[2] looks "
        "right: the mistake is in formula (2) for dW[2]"
    )


def test_a_float32_backward_fails_and_is_told_to_compute_in_float64():
    def float32_backward(AL, Y, caches):
        grads = refs.L_model_backward(AL, Y, caches)
        return {k: v.astype(np.float32) for k, v in grads.items()}

    report = check_backward(float32_backward, cases=default_cases()[:1])
    assert not report.passed
    row = next(f for f in report.results[0].findings if not f.passed)
    assert "dtype float32: compute in float64" in (row.text or "")


def test_jax_numpy_code_runs_in_float64():
    def jnp_backward(AL, Y, caches):
        return {k: jnp.asarray(v) for k, v in refs.L_model_backward(AL, Y, caches).items()}

    assert check_backward(jnp_backward).passed
    assert jnp.zeros(1).dtype == jnp.float32  # float64 was scoped to the check


def test_the_networks_are_reproducible_from_the_seed():
    assert default_cases(3) == default_cases(3)
    assert default_cases(3)[3:] != default_cases(4)[3:]
    case = BackwardCase("tiny", (2, 3, 1), 4, seed=5)
    a = check_backward(refs.L_model_backward_missing_1_over_m, cases=[case])
    b = check_backward(refs.L_model_backward_missing_1_over_m, cases=[case])
    assert a.to_dict() == b.to_dict()


# ------------------------------------------------------------------------- assertion helper


def test_assert_backward_matches_raises_with_the_summary_and_the_table():
    with pytest.raises(AssertionError) as info:
        assert_backward_matches(refs.L_model_backward_db_without_keepdims)
    message = str(info.value)
    first = message.strip().splitlines()[0]
    assert first == "FAIL: 5 of 5 networks disagree with jax.grad:"
    assert "db3, db2, db1: db[l] has shape (n_l,), not (n_l, 1): sum with keepdims=True" in message
    assert "│ db1 │ 4 (want 4×1) │" in message and "no keepdims (2)" in message


def test_assert_backward_matches_returns_the_report_when_it_passes():
    report = assert_backward_matches(refs.L_model_backward)
    assert report.passed and report.function == "L_model_backward"


# ------------------------------------------------------------- values that cannot be compared


def _returning(value):
    def backward(AL, Y, caches):
        return value(refs.L_model_backward(AL, Y, caches))

    return backward


@pytest.mark.parametrize(
    ("transform", "error", "message"),
    [
        (lambda g: list(g.values()), ShapeError, r"returned list on the network 'course'.*"
         r"expected a dict with keys 'dA0' … 'dA2', 'dW1' … 'dW3', 'db1' … 'db3'"),
        (lambda g: {**g, "dW1": None}, DTypeError, r"returned 'dW1' = NoneType .* expected a "
         r"numeric array"),
        (lambda g: {**g, "dW2": g["dW2"][:, :2]}, ShapeError,
         r"returned 'dW2' with shape \(3, 2\) .* expected \(3, 4\), W2's shape"),
        (lambda g: {**g, "dA0": g["dA0"][:, :1]}, ShapeError,
         r"'dA0' with shape \(5, 1\) .* expected \(5, 8\), X's shape \(n_x, m\)"),
    ],
    ids=["not-a-dict", "not-numeric", "wrong-shape", "wrong-dA-shape"],
)  # fmt: skip
def test_a_value_that_cannot_be_compared_is_one_line_error(transform, error, message):
    func = _returning(transform)
    with pytest.raises(error, match=message) as info:
        check_backward(func)
    assert "\n" not in str(info.value)
    with pytest.raises(AssertionError, match=message):  # in a test: a failure, not an error
        assert_backward_matches(func)


def test_an_exception_in_the_function_is_its_networks_failure():
    def broken(AL, Y, caches):
        return {"dW1": undefined_name}  # type: ignore[name-defined]  # noqa: F821

    report = check_backward(broken, cases=default_cases()[:2])
    assert not report.passed
    assert all(r.error is not None for r in report.results)
    assert report.results[0].error.startswith("NameError: name 'undefined_name' is not defined")
    assert "test_testing.py, line" in report.results[0].error


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [({"convention": "torch"}, "unknown convention 'torch'"), ({"loss": "ce"}, "loss 'ce'")],
    ids=["convention", "loss"],
)
def test_bad_options_raise_config_errors(kwargs, message):
    with pytest.raises(ConfigError, match=message):
        check_backward(refs.L_model_backward, **kwargs)


# ------------------------------------------------- real students' files (tests/student_gallery)

GALLERY = ROOT / "tests" / "student_gallery"
STEP = GALLERY / "step_by_step.py"


@pytest.mark.parametrize(
    ("name", "note", "text", "mistakes"),
    [
        ("L_model_backward_shifted", "shifted",
         "your dA3 holds what dA2 should (every dA key is shifted by one; checked one lower)",
         set()),
        ("L_model_backward_shifted_sign", "shifted", "your dA3 holds what dA2 should",
         {"dz_sign", "follows"}),
        ("L_model_backward_only_dW_db", "missing",
         "returned no dA0 … dA2 (expected dA0 … dA2, dW1 … dW3, db1 … db3); the keys it did "
         "return are checked", set()),
        ("L_model_backward_lowercase", "case",
         "your keys dw3, da2, dw2, da1, dw1, da0 differ from dW3, dA2, dW2, dA1, dW1, dA0 only in "
         "case (checked as those)", set()),
    ],
    ids=["dA-shifted", "dA-shifted-and-sign", "only-dW-db", "lowercase"],
)  # fmt: skip
def test_a_key_problem_is_said_and_every_key_there_is_still_checked(name, note, text, mistakes):
    report = check_backward(load_function(f"{STEP}:{name}"))
    assert not report.passed
    assert all([n.id for n in r.notes] == [note] for r in report.results)
    course_net = report.results[0]
    assert text in course_net.notes[0].text
    assert report.mistakes() == mistakes, report.format()  # the values behind the keys
    kinds = {f.key[:2] for f in course_net.findings}
    assert kinds == ({"dW", "db"} if note == "missing" else {"dA", "dW", "db"})
    assert "keys on 'course' (and likewise on 'square', " in report.format()


def test_every_network_is_run_and_reported_when_one_has_a_key_problem():
    # NameError on the four networks whose loop runs; on the one-layer network, dA1 for dA0
    report = check_backward(load_function(f"{STEP}:L_model_backward_undefined_helper"))
    assert len(report.results) == len(default_cases())
    one_layer = [r for r in report.results if len(r.case.layers) == 2]
    assert [r.notes[0].text[:31] for r in one_layer] == ["your dA1 holds what dA0 should "]
    assert all(f.passed for r in one_layer for f in r.findings)
    deeper = [r.error or "" for r in report.results if len(r.case.layers) > 2]
    assert len(deeper) == 4 and all(e.startswith("NameError") for e in deeper)


def test_a_method_of_a_class_is_named_with_a_dotted_name():
    report = check_backward(load_function(f"{STEP}:NN.L_model_backward"))
    assert report.passed, report.format()
    with pytest.raises(
        ConfigError,
        match=r"'NN' in 'step_by_step.py' has no attribute 'nope' "
        r"\(it has L_model_backward\): name one with FILE.py:NN.NAME",
    ):
        load_function(f"{STEP}:NN.nope")


def test_an_error_while_reading_a_cache_says_what_the_caches_are():
    report = check_backward(load_function(f"{STEP}:L_model_backward_dict_cache"))
    error = report.results[0].error or ""
    assert error.startswith("TypeError: tuple indices must be integers or slices, not str")
    assert (
        "— while reading a cache: what was passed is the course's list of 3 tuples caches[l] = "
        "((A_prev, W, b), Z) (a tuple of numpy arrays, then Z), here caches[0] = "
        "((5×8, 4×5, 4×1), 4×8); caches[1] = ((4×8, 3×4, 3×1), 3×8)"
    ) in error


def test_a_file_that_works_at_load_time_is_told_to_use_a_main_guard():
    with pytest.raises(
        ConfigError, match=r"'trains_at_import.py' does not load: FileNotFoundError"
    ) as info:
        load_function(str(GALLERY / "trains_at_import.py"))
    assert str(info.value).endswith(
        "the whole file runs when it is loaded — move top-level work (loading data, training, "
        'plotting) under `if __name__ == "__main__":`'
    )


REG = GALLERY / "regularization.py"
# (function in tests/student_gallery/regularization.py, --l2 λ, the diagnosis expected)
BUGGY_L2 = [
    ("L_model_backward_forgets_l2", 0.7, {"dW_l2_missing"}),
    ("L_model_backward", 0.0, {"dW_l2_added"}),  # lambd=0.7 by default, the cost has no L2
]


def test_a_correct_regularized_backward_passes_with_its_lambda():
    func = load_function(f"{REG}:L_model_backward_with_regularization")
    report = check_backward(func, l2=0.7)
    assert report.passed, report.format()
    assert report.l2 == 0.7 and "loss bce, L2 λ = 0.7) against jax.grad" in report.format()
    assert check_backward(load_function(f"{REG}:L_model_backward"), l2=0.7).passed  # its default


@pytest.mark.parametrize(("name", "l2", "expected"), BUGGY_L2, ids=["forgets", "added"])
def test_an_L2_term_missing_or_added_is_a_named_mistake_of_formula_2(name, l2, expected):
    report = check_backward(load_function(f"{REG}:{name}"), l2=l2)
    assert report.mistakes() == expected, report.format()
    assert {f.key[:2] for r in report.results for f in r.findings if not f.passed} == {"dW"}
    assert all("formula (2)" in line for line in report.summary())


@pytest.mark.parametrize(
    ("name", "l2", "message"),
    [
        ("L_model_backward_with_regularization", 0.0,
         r"`L_model_backward_with_regularization\(AL, Y, caches, lambd\)` cannot be called as "
         r"L_model_backward_with_regularization\(AL, Y, caches\) \(missing a required argument: "
         r"'lambd'\): it takes lambd: check it with the cost's λ, `--l2 λ`"),
        ("L_model_backward_shifted", 0.7,
         r"cannot be called as L_model_backward_shifted\(AL, Y, caches, lambd\) \(too many "
         r"positional arguments\): `--l2` passes λ as a 4th argument: add `lambd` to it, or "
         r"leave `--l2` out"),
    ],
    ids=["lambd-without-l2", "l2-without-lambd"],
)  # fmt: skip
def test_a_signature_mismatch_is_said_as_such_not_as_a_disagreement(name, l2, message):
    path = REG if "regularization" in name else STEP
    with pytest.raises(ConfigError, match=message):
        check_backward(load_function(f"{path}:{name}"), l2=l2)


# ------------------------------- the regularization assignment's flat caches (flat_cache.py)

FLAT = GALLERY / "flat_cache.py"
# (function in tests/student_gallery/flat_cache.py, its options, the diagnosis expected)
BUGGY_FLAT = [
    ("backward_propagation_with_regularization_forgets", {"l2": 0.7}, {"dW_l2_missing"}),
    ("backward_propagation_with_regularization_half", {"l2": 0.7}, {"dW_l2_half"}),
    ("backward_propagation_with_regularization_no_m", {"l2": 0.7}, {"dW_l2_without_1_over_m"}),
    ("backward_propagation_default_lambd", {}, {"dW_l2_added"}),
    ("backward_propagation_with_dropout_no_mask", {"keep_prob": 0.8}, {"dropout_mask_missing"}),
    ("backward_propagation_with_dropout_not_scaled", {"keep_prob": 0.8},
     {"dropout_not_scaled", "follows"}),
    ("backward_propagation_with_dropout_forgotten", {"keep_prob": 0.8},
     {"dropout_missing", "follows"}),
    ("backward_propagation_with_dropout_times", {"keep_prob": 0.8},
     {"dropout_times_keep_prob", "follows"}),
]  # fmt: skip


@pytest.mark.parametrize(
    ("name", "options"),
    [
        ("backward_propagation", {}),
        ("backward_propagation_with_regularization", {"l2": 0.7}),
        ("backward_propagation_with_dropout", {"keep_prob": 0.8}),
        ("backward_propagation_with_dropout", {"keep_prob": 0.5}),
    ],
    ids=["plain", "l2", "dropout-0.8", "dropout-0.5"],
)
def test_the_assignments_own_functions_pass_with_their_flat_caches(name, options):
    report = check_backward(load_function(f"{FLAT}:{name}"), **options)
    assert report.passed and report.convention == "flat", report.format()
    keys = [f.key for f in report.results[0].findings]
    assert keys == ["dZ3", "dW3", "db3", "dA2", "dZ2", "dW2", "db2", "dA1", "dZ1", "dW1", "db1"]
    assert max(f.difference for r in report.results for f in r.findings) <= 1e-13


def test_the_flat_cache_is_the_assignments_with_the_oracles_masks():
    from manualgrad.checking.backward import _draw, flat_cache, flat_cases

    net = _draw(flat_cases()[0], "bce", 0.0, 0.8)
    _, D1, A1, W1, b1, Z2, D2, A2, W2, b2, _, A3, W3, b3 = flat_cache(net)
    assert D1.dtype == np.int64 and D2.dtype == np.bool_  # as forward_propagation_with_dropout
    assert 0 < D1.sum() < D1.size and 0 < D2.sum() < D2.size
    np.testing.assert_array_equal(A1, np.maximum(W1 @ net.X + b1, 0) * D1 / 0.8)
    np.testing.assert_array_equal(Z2, W2 @ A1 + b2)
    np.testing.assert_array_equal(A2, np.maximum(Z2, 0) * D2 / 0.8)
    np.testing.assert_allclose(A3, 1 / (1 + np.exp(-(W3 @ A2 + b3))), rtol=1e-15)

    # the oracle's masks are the cache's: jax.grad of the cost written here, with D1 and D2
    d1, d2 = D1.astype(np.float64), D2.astype(np.float64)

    def cost(W):
        a1 = jnp.maximum(W["W1"] @ net.X + b1, 0) * d1 / 0.8
        a2 = jnp.maximum(W["W2"] @ a1 + b2, 0) * d2 / 0.8
        a3 = jax.nn.sigmoid(W["W3"] @ a2 + b3)
        return -jnp.mean(net.Y * jnp.log(a3) + (1 - net.Y) * jnp.log(1 - a3))

    with jax.enable_x64(True):
        g = jax.jit(jax.grad(cost))({"W1": W1, "W2": W2, "W3": W3})
    for k in ("W1", "W2", "W3"):
        np.testing.assert_allclose(net.truth["d" + k], g[k], rtol=1e-12)


@pytest.mark.parametrize(
    ("name", "options", "expected"), BUGGY_FLAT, ids=[case[0] for case in BUGGY_FLAT]
)
def test_each_flat_cache_mistake_is_named(name, options, expected):
    report = check_backward(load_function(f"{FLAT}:{name}"), **options)
    assert report.mistakes() == expected, report.format()


@pytest.mark.parametrize(
    ("name", "options", "message"),
    [
        ("backward_propagation_with_dropout", {},
         r"cannot be called as backward_propagation_with_dropout\(X, Y, cache\) \(missing a "
         r"required argument: 'keep_prob'\): it takes keep_prob: check it with dropout, "
         r"`--keep-prob p`"),
        ("backward_propagation", {"keep_prob": 0.8},
         r"`--keep-prob` passes keep_prob as a 4th argument: add `keep_prob` to it"),
        ("backward_propagation_with_regularization", {},
         r"missing a required argument: 'lambd'\): it takes lambd"),
        ("backward_propagation_with_dropout", {"keep_prob": 0.8, "l2": 0.7},
         r"`l2` and `keep_prob` together"),
    ],
    ids=["keep_prob-without-option", "option-without-keep_prob", "lambd", "both"],
)  # fmt: skip
def test_a_flat_signature_mismatch_is_one_config_error(name, options, message):
    with pytest.raises(ConfigError, match=message):
        check_backward(load_function(f"{FLAT}:{name}"), **options)


def test_keep_prob_needs_the_flat_cache():
    with pytest.raises(ConfigError, match=r"the course convention's arguments have no dropout"):
        check_backward(refs.L_model_backward, keep_prob=0.8)


def test_a_cache_read_as_a_dict_says_what_the_flat_cache_is():
    func = load_function(f"{FLAT}:backward_propagation_with_dropout_reads_cache_as_dict")
    error = check_backward(func, keep_prob=0.8).results[1].error or ""
    assert error.startswith("TypeError: tuple indices must be integers or slices, not str")
    assert (
        "— while reading a cache: what was passed is the regularization assignment's flat tuple "
        "cache = (Z1, D1, A1, W1, b1, Z2, D2, A2, W2, b2, Z3, A3, W3, b3), here Z1 4×6, D1 4×6"
    ) in error


# --------------------------------------------------------------------------- load_function


def test_load_function_finds_the_named_function_and_defaults_to_L_model_backward():
    assert load_function(f"{REFS}:grads").__name__ == "grads"
    default = load_function(str(REFS))
    assert default.__name__ == "L_model_backward"
    assert check_backward(default).passed


def _write(tmp_path, text, name="student.py"):
    path = tmp_path / name
    path.write_text(textwrap.dedent(text), encoding="utf-8")
    return str(path)


@pytest.mark.parametrize(
    ("source", "spec", "message"),
    [
        (None, "{dir}/missing.py", r"no such file '.*missing.py'"),
        (None, "{dir}/notes.txt:f", r"expected FILE.py or FILE.py:FUNCTION, got '.*notes.txt:f'"),
        ("def f(:\n", "{path}:f", r"'student.py' does not load: SyntaxError: .* \(line 1\)"),
        ("import numpy\nraise RuntimeError('no data')\n", "{path}:f",
         r"'student.py' does not load: RuntimeError: no data \(line 2\)"),
        ("import not_a_module_anywhere\n", "{path}:f",
         r"'student.py' does not load: ModuleNotFoundError: No module named"),
        ("def helper(): pass\n", "{path}:L_model_backward",
         r"'student.py' defines no function 'L_model_backward' \(it has helper\)"),
        ("L_model_backward = 3\n", "{path}", r"'L_model_backward' in 'student.py' is a int"),
    ],
    ids=["no-file", "not-python", "syntax-error", "raises", "import-error", "no-function",
         "not-callable"],
)  # fmt: skip
def test_load_function_errors_are_one_line(tmp_path, source, spec, message):
    path = _write(tmp_path, source) if source is not None else str(tmp_path / "student.py")
    with pytest.raises(ConfigError, match=message) as info:
        load_function(spec.format(dir=tmp_path, path=path))
    assert "\n" not in str(info.value)


def test_load_function_lets_the_file_import_its_neighbours(tmp_path):
    _write(tmp_path, "def relu_backward(dA, Z):\n    return dA * (Z > 0)\n", "dnn_utils.py")
    path = _write(tmp_path, "from dnn_utils import relu_backward\n")
    assert load_function(f"{path}:relu_backward").__name__ == "relu_backward"


# --------------------------------------------------------------------------- pytest plugin


def test_pyproject_registers_the_pytest_plugin():
    pyproject = tomllib.loads((ROOT / "pyproject.toml").read_text(encoding="utf-8"))
    plugins = pyproject["project"]["entry-points"]["pytest11"]
    assert plugins == {"manualgrad.pytest_plugin": "manualgrad.pytest_plugin"}


STUDENT_TEST = """
from student import L_model_backward

def test_backward(assert_backward_matches):
    assert_backward_matches(L_model_backward)
"""


def _student(pytester, backward_name):
    source = REFS.read_text(encoding="utf-8")
    source += f"\nL_model_backward = {backward_name}\n"
    pytester.makepyfile(student=source, test_student=STUDENT_TEST)
    return pytester.runpytest("-p", "manualgrad.pytest_plugin", "-q", "-p", "no:cacheprovider")


def test_the_fixture_passes_a_correct_backward_in_a_three_line_test(pytester):
    result = _student(pytester, "make_L_model_backward()")
    result.assert_outcomes(passed=1)


def test_the_fixture_fails_a_buggy_backward_with_the_diagnosis(pytester):
    result = _student(pytester, "L_model_backward_missing_1_over_m")
    result.assert_outcomes(failed=1)
    result.stdout.fnmatch_lines(
        [
            "*FAIL: 5 of 5 networks disagree with jax.grad:*",
            "*dW4, dW3, dW2, dW1: dW[[]l] is m times too large: the 1/m of formula (2) is missing*",
        ]
    )


def test_the_fixture_is_the_library_function(pytester):
    pytester.makepyfile(
        """
        from manualgrad.checking.backward import assert_backward_matches as library

        def test_same(assert_backward_matches):
            assert assert_backward_matches is library
        """
    )
    pytester.runpytest("-p", "manualgrad.pytest_plugin", "-q").assert_outcomes(passed=1)


def test_float64_stays_scoped_to_the_check():
    check_backward(refs.L_model_backward, cases=default_cases()[:1])
    assert not jax.config.jax_enable_x64


# -------------------------------------------------------------------------- the docs page

DOC = ROOT / "docs" / "check_your_backward.md"


def _blocks(kind):
    """The page's ```kind blocks (a fence may name a file: ```python title="f.py")."""
    text = DOC.read_text(encoding="utf-8")
    fences = re.finditer(rf"^```{kind}[^\n]*\n(.*?)^```", text, re.S | re.M)
    return [fence.group(1) for fence in fences]


def _run_check(capsys, monkeypatch, path):
    monkeypatch.setenv("COLUMNS", "100")
    code = main(["check", "--against", str(path)])
    out = capsys.readouterr().out
    return code, "".join(line.rstrip() + "\n" for line in out.splitlines())


def test_the_docs_page_shows_the_real_output_of_its_example_and_of_its_fix(
    tmp_path, capsys, monkeypatch
):
    student, fix = _blocks("python")[0], _blocks("python")[1]
    bug_output, fixed_output = _blocks("text")[0], _blocks("text")[1]
    path = tmp_path / "my_backward.py"
    path.write_text(student, encoding="utf-8")
    code, printed = _run_check(capsys, monkeypatch, path)
    assert code == 1 and same_printout(printed, bug_output), printed
    fixed = student.replace("    dZ[Z < 0] = 0\n", "    dZ[Z <= 0] = 0\n")
    assert fix.strip() in fixed  # the page's fix is what the fixed file contains
    path.write_text(fixed, encoding="utf-8")
    code, printed = _run_check(capsys, monkeypatch, path)
    assert code == 0 and same_printout(printed, fixed_output), printed


def test_the_docs_page_lists_every_mistake_of_the_catalogue():
    text = DOC.read_text(encoding="utf-8")
    missing = [m.label for m in MISTAKES if f"| {m.label} " not in text]
    assert missing == []
