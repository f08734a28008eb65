"""Golden tests for the course's conv API (C4W1 "Convolution model – Step by Step").

Two kinds of oracle, neither of them the code under test:
- the notebook's printed expected outputs and its `public_tests.py` values
  (greyhatguy007/deep-learning-specialization@dcc0454, `C4-Convolutional Neural
  Networks/week1/W1A1/`), rebuilt from the same `np.random.seed` draws — NumPy's legacy
  stream is frozen, so the inputs are exactly the course's;
- `jax.grad` of ⟨output, G⟩ for an independent forward written here in the course's
  layout with `lax.conv_general_dilated` (NHWC, HWIO) and `lax.reduce_window`: its
  gradient is the backward pass applied to G, to ≤ 1e-12 in float64.
"""

from __future__ import annotations

import functools

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from helpers import F64_TOL, rel_err
from manualgrad import course
from manualgrad._errors import ShapeError

PRINTED = {"rtol": 0, "atol": 1e-8}  # the notebook prints 8 decimals of float64 values
FULL = {"rel": 1e-14, "abs": 0}  # values printed with all 16-17 digits


# --------------------------------------------------------------- the notebook's outputs


def test_zero_pad_matches_the_notebook(x64):
    np.random.seed(1)
    x = np.random.randn(4, 3, 3, 2)
    x_pad = course.zero_pad(x, 3)
    assert x_pad.shape == (4, 9, 9, 2)
    np.testing.assert_allclose(
        x[1, 1],
        [[0.90085595, -0.68372786], [-0.12289023, -0.93576943], [-0.26788808, 0.53035547]],
        **PRINTED,
    )  # the draws are the course's
    np.testing.assert_array_equal(x_pad[1, 1], np.zeros((9, 2)))
    np.testing.assert_array_equal(x_pad[:, 3:6, 3:6, :], x)
    np.testing.assert_array_equal(x_pad[0, :, 7:9, 1], 0)
    # public_tests.py, test 2: pad 2 on (5, 4, 4, 3)
    np.random.seed(1)
    x = np.random.randn(5, 4, 4, 3)
    x_pad = course.zero_pad(x, 2)
    assert x_pad.shape == (5, 8, 8, 3)
    np.testing.assert_array_equal(x_pad[:, 2:6, 2:6, :], x)
    assert float(jnp.sum(jnp.abs(x_pad))) == pytest.approx(np.sum(np.abs(x)), rel=1e-15)


def test_conv_single_step_matches_the_notebook_and_public_tests(x64):
    np.random.seed(1)
    a_slice_prev, W, b = (
        np.random.randn(4, 4, 3),
        np.random.randn(4, 4, 3),
        np.random.randn(1, 1, 1),
    )
    Z = course.conv_single_step(a_slice_prev, W, b)
    assert Z.shape == () and Z.dtype == jnp.float64
    assert float(Z) == pytest.approx(-6.999089450680221, **FULL)
    np.random.seed(3)
    a_slice_prev, W, b = (
        np.random.randn(5, 5, 3),
        np.random.randn(5, 5, 3),
        np.random.randn(1, 1, 1),
    )
    assert float(course.conv_single_step(a_slice_prev, W, b)) == pytest.approx(
        -3.5443670581382474, **FULL
    )


def test_conv_forward_matches_the_notebook(x64):
    np.random.seed(1)
    A_prev = np.random.randn(2, 5, 7, 4)
    W, b = np.random.randn(3, 3, 4, 8), np.random.randn(1, 1, 1, 8)
    hparameters = {"pad": 1, "stride": 2}
    Z, cache_conv = course.conv_forward(A_prev, W, b, hparameters)
    assert Z.shape == (2, 3, 4, 8)
    assert float(jnp.mean(Z)) == pytest.approx(0.5511276474566768, **FULL)
    np.testing.assert_allclose(
        Z[0, 2, 1],
        [-2.17796037, 8.07171329, -0.5772704, 3.36286738, 4.48113645, -2.89198428, 10.99288867,
         3.03171932],
        **PRINTED,
    )  # fmt: skip
    np.testing.assert_allclose(
        cache_conv[0][1][2][3], [-1.1191154, 1.9560789, -0.3264995, -1.34267579], **PRINTED
    )


def test_conv_forward_matches_public_tests_shapes_and_values(x64):
    np.random.seed(3)
    A_prev = np.random.randn(2, 5, 7, 4)
    W, b = np.random.randn(3, 3, 4, 8), np.random.randn(1, 1, 1, 8)
    assert course.conv_forward(A_prev, W, b, {"pad": 3, "stride": 1})[0].shape == (2, 9, 11, 8)
    assert course.conv_forward(A_prev, W, b, {"pad": 0, "stride": 2})[0].shape == (2, 2, 3, 8)
    W, b = np.random.randn(5, 5, 4, 8), np.random.randn(1, 1, 1, 8)
    Z, cache_conv = course.conv_forward(A_prev, W, b, {"pad": 6, "stride": 1})
    assert Z.shape == (2, 13, 15, 8)
    assert float(jnp.mean(Z)) == pytest.approx(-0.5384027772160062, **FULL)
    expected_conv = [
        [1.98848968, 1.19505834, -0.0952376, -0.52718778],
        [-0.32158469, 0.15113037, -0.01862772, 0.48352879],
        [0.76896516, 1.36624284, 1.14726479, -0.11022916],
        [0.38825041, -0.38712718, -0.58722031, 1.91082685],
        [-0.45984615, 1.99073781, -0.34903539, 0.25282509],
        [1.08940955, 0.02392202, 0.39312528, -0.2413848],
        [-0.47552486, -0.16577702, -0.64971742, 1.63138295],
    ]
    np.testing.assert_allclose(cache_conv[0][1, 2], expected_conv, **PRINTED)


@pytest.mark.parametrize(
    ("stride", "show", "mode", "expected"),
    [
        (1, (1, 1), "max", [[1.96710175, 0.84616065, 1.27375593],
                            [1.96710175, 0.84616065, 1.23616403],
                            [1.62765075, 1.12141771, 1.2245077]]),
        (1, (1, 1), "average", [[0.44497696, -0.00261695, -0.31040307],
                                [0.50811474, -0.23493734, -0.23961183],
                                [0.11872677, 0.17255229, -0.22112197]]),
        (2, (0,), "max", [[[1.74481176, 0.90159072, 1.65980218],
                           [1.74481176, 1.6924546, 1.65980218]],
                          [[1.13162939, 1.51981682, 2.18557541],
                           [1.13162939, 1.6924546, 2.18557541]]]),
        (2, (1,), "average", [[[-0.17313416, 0.32377198, -0.34317572],
                               [0.02030094, 0.14141479, -0.01231585]],
                              [[0.42944926, 0.08446996, -0.27290905],
                               [0.15077452, 0.28911175, 0.00123239]]]),
    ],
    ids=["stride1-max", "stride1-average", "stride2-max", "stride2-average"],
)  # fmt: skip
def test_pool_forward_matches_the_notebook(x64, stride, show, mode, expected):
    np.random.seed(1)
    A_prev = np.random.randn(2, 5, 5, 3)
    A, _ = course.pool_forward(A_prev, {"stride": stride, "f": 3}, mode=mode)
    assert A.shape == ((2, 3, 3, 3) if stride == 1 else (2, 2, 2, 3))
    np.testing.assert_allclose(A[show], expected, **PRINTED)


def test_pool_forward_matches_public_tests_f2_stride1(x64):
    np.random.seed(1)
    A_prev = np.random.randn(2, 5, 5, 3)
    A, cache = course.pool_forward(A_prev, {"stride": 1, "f": 2}, mode="max")
    np.testing.assert_allclose(
        A[1, 1],
        [[1.19891788, 0.74055645, 0.07734007], [0.31515939, 0.84616065, 0.07734007],
         [0.69803203, 0.84616065, 1.2245077], [0.69803203, 1.12141771, 1.2245077]],
        **PRINTED,
    )  # fmt: skip
    np.testing.assert_allclose(cache[0][1, 2, 1], [-0.26621851, 0.03261455, -1.37311732], **PRINTED)
    A, _ = course.pool_forward(A_prev, {"stride": 1, "f": 2}, mode="average")
    np.testing.assert_allclose(
        A[1, 1],
        [[0.11583785, 0.34545544, -0.6561907], [-0.2334108, 0.3364666, -0.69382351],
         [0.25497093, -0.21741362, -0.07342615], [-0.04092568, -0.01110394, 0.12495022]],
        **PRINTED,
    )  # fmt: skip


def test_conv_backward_matches_the_notebook(x64):
    np.random.seed(1)
    A_prev = np.random.randn(10, 4, 4, 3)
    W, b = np.random.randn(2, 2, 3, 8), np.random.randn(1, 1, 1, 8)
    Z, cache_conv = course.conv_forward(A_prev, W, b, {"pad": 2, "stride": 2})
    dA, dW, db = course.conv_backward(Z, cache_conv)  # the notebook feeds Z as dZ
    assert (dA.shape, dW.shape, db.shape) == ((10, 4, 4, 3), (2, 2, 3, 8), (1, 1, 1, 8))
    # the notebook's "Expected Output" table prints 12 significant digits
    assert float(jnp.mean(dA)) == pytest.approx(1.45243777754, abs=5e-12)
    assert float(jnp.mean(dW)) == pytest.approx(1.72699145831, abs=5e-12)
    assert float(jnp.mean(db)) == pytest.approx(7.83923256462, abs=5e-12)


def test_create_mask_from_window_matches_the_notebook():
    np.random.seed(1)
    x = np.random.randn(2, 3)
    np.testing.assert_array_equal(
        course.create_mask_from_window(x), [[True, False, False], [False, False, False]]
    )
    x = np.array([[-1, 2, 3], [2, -3, 2], [1, 5, -2]])
    expected = [[False, False, False], [False, False, False], [False, True, False]]
    np.testing.assert_array_equal(course.create_mask_from_window(x), expected)


def test_create_mask_from_window_marks_every_tied_maximum():
    x = np.array([[1.0, 4.0], [4.0, 2.0]])
    np.testing.assert_array_equal(course.create_mask_from_window(x), [[False, True], [True, False]])


def test_distribute_value_matches_the_notebook():
    np.testing.assert_array_equal(course.distribute_value(2, (2, 2)), [[0.5, 0.5], [0.5, 0.5]])
    a = course.distribute_value(100, (10, 10))
    assert a.shape == (10, 10) and float(jnp.sum(a)) == 100
    np.testing.assert_array_equal(course.distribute_value(3.0, (1, 3)), [[1.0, 1.0, 1.0]])


def test_pool_backward_matches_the_notebook(x64):
    np.random.seed(1)
    A_prev = np.random.randn(5, 5, 3, 2)
    A, cache = course.pool_forward(A_prev, {"stride": 1, "f": 2})
    assert A.shape == (5, 4, 2, 2) and cache[0].shape == (5, 5, 3, 2)
    dA = np.random.randn(5, 4, 2, 2)
    assert float(np.mean(dA)) == pytest.approx(0.145713902729, abs=5e-13)  # the course's draws
    dA_prev1 = course.pool_backward(dA, cache, mode="max")
    dA_prev2 = course.pool_backward(dA, cache, mode="average")
    assert dA_prev1.shape == (5, 5, 3, 2)
    np.testing.assert_allclose(
        dA_prev1[1, 1], [[0, 0], [5.05844394, -1.68282702], [0, 0]], **PRINTED
    )
    np.testing.assert_allclose(
        dA_prev2[1, 1],
        [[0.08485462, 0.2787552], [1.26461098, -0.25749373], [1.17975636, -0.53624893]],
        **PRINTED,
    )


def test_conv_forward_in_float32_matches_the_notebook_to_float32_precision():
    np.random.seed(1)
    A_prev = np.random.randn(2, 5, 7, 4)
    W, b = np.random.randn(3, 3, 4, 8), np.random.randn(1, 1, 1, 8)
    with jax.default_matmul_precision("highest"):
        Z, _ = course.conv_forward(A_prev, W, b, {"pad": 1, "stride": 2})
    assert Z.dtype == jnp.float32
    np.testing.assert_allclose(
        Z[0, 2, 1],
        [-2.17796037, 8.07171329, -0.5772704, 3.36286738, 4.48113645, -2.89198428, 10.99288867,
         3.03171932],
        rtol=1e-5, atol=1e-5,
    )  # fmt: skip


# ------------------------------------------------------ caches laid out as in the course


def test_caches_hold_the_inputs_and_hparameters_as_in_the_course(x64):
    rng = np.random.default_rng(0)
    A_prev, W = rng.standard_normal((2, 4, 4, 3)), rng.standard_normal((3, 3, 3, 2))
    b = rng.standard_normal((1, 1, 1, 2))
    hparameters = {"stride": 1, "pad": 1}
    _, cache = course.conv_forward(A_prev, W, b, hparameters)
    assert len(cache) == 4 and cache[3] is hparameters
    for cached, given in zip(cache[:3], (A_prev, W, b), strict=True):
        np.testing.assert_array_equal(cached, given)
    pool_h = {"f": 2, "stride": 2}
    _, pool_cache = course.pool_forward(A_prev, pool_h)
    assert len(pool_cache) == 2 and pool_cache[1] is pool_h
    np.testing.assert_array_equal(pool_cache[0], A_prev)


# ---------------------------------------------- jax.grad of an independent lax forward

CONV_SHAPES = {
    # (m, n_H_prev, n_W_prev, n_C_prev), f, n_C, stride, pad
    "f3-stride2-pad2": ((2, 5, 7, 3), 3, 2, 2, 2),
    "f2-stride2-pad1-odd": ((2, 5, 5, 1), 2, 3, 2, 1),
    "f4-stride3-pad2": ((2, 7, 6, 2), 4, 2, 3, 2),
}


@functools.partial(jax.jit, static_argnums=(3, 4))
def lax_conv(A_prev, W, b, stride, pad):
    """The course's conv_forward by lax: NHWC images, HWIO filters (the course's W layout)."""
    Z = jax.lax.conv_general_dilated(
        A_prev,
        W,
        window_strides=(stride, stride),
        padding=((pad, pad), (pad, pad)),
        dimension_numbers=("NHWC", "HWIO", "NHWC"),
        precision=jax.lax.Precision.HIGHEST,
    )
    return Z + b


@functools.partial(jax.jit, static_argnums=(1, 2, 3))
def lax_pool(A_prev, f, stride, mode):
    """The course's pool_forward by reduce_window over (n_H, n_W), per example and channel."""
    dims, steps = (1, f, f, 1), (1, stride, stride, 1)
    if mode == "max":
        return jax.lax.reduce_window(A_prev, -jnp.inf, jax.lax.max, dims, steps, "VALID")
    return jax.lax.reduce_window(A_prev, 0.0, jax.lax.add, dims, steps, "VALID") / (f * f)


@pytest.mark.parametrize("case", list(CONV_SHAPES))
def test_conv_forward_and_backward_equal_lax_conv_and_its_jax_grad(x64, case):
    shape, f, n_C, stride, pad = CONV_SHAPES[case]
    rng = np.random.default_rng(len(case))
    A_prev = jnp.asarray(rng.standard_normal(shape))
    W = jnp.asarray(rng.standard_normal((f, f, shape[3], n_C)))
    b = jnp.asarray(rng.standard_normal((1, 1, 1, n_C)))
    Z, cache = course.conv_forward(A_prev, W, b, {"stride": stride, "pad": pad})
    want_Z = lax_conv(A_prev, W, b, stride, pad)
    assert Z.shape == want_Z.shape
    assert rel_err(Z, want_Z) <= F64_TOL
    G = jnp.asarray(rng.standard_normal(Z.shape))  # dZ = ∂L/∂Z for L = ⟨Z, G⟩

    def loss(A_prev, W, b):
        return jnp.sum(lax_conv(A_prev, W, b, stride, pad) * G)

    want = jax.jit(jax.grad(loss, argnums=(0, 1, 2)))(A_prev, W, b)
    got = course.conv_backward(G, cache)
    for name, g, w in zip(("dA_prev", "dW", "db"), got, want, strict=True):
        assert g.shape == w.shape, name
        assert rel_err(g, w) <= F64_TOL, name


POOL_SHAPES = {
    # (m, n_H_prev, n_W_prev, n_C), f, stride
    "f3-stride2-overlapping": ((2, 7, 6, 2), 3, 2),
    "f2-stride1-overlapping": ((3, 4, 5, 2), 2, 1),
}


@pytest.mark.parametrize("mode", ["max", "average"])
@pytest.mark.parametrize("case", list(POOL_SHAPES))
def test_pool_forward_and_backward_equal_reduce_window_and_its_jax_grad(x64, case, mode):
    shape, f, stride = POOL_SHAPES[case]
    rng = np.random.default_rng(len(case))
    A_prev = jnp.asarray(rng.standard_normal(shape))  # distinct values: one max per window
    A, cache = course.pool_forward(A_prev, {"f": f, "stride": stride}, mode=mode)
    assert rel_err(A, lax_pool(A_prev, f, stride, mode)) <= F64_TOL
    G = jnp.asarray(rng.standard_normal(A.shape))
    want = jax.jit(jax.grad(lambda a: jnp.sum(lax_pool(a, f, stride, mode) * G)))(A_prev)
    got = course.pool_backward(G, cache, mode=mode)
    assert got.shape == A_prev.shape
    assert rel_err(got, want) <= F64_TOL


# ------------------------------------------------------------------------------- errors
# (a missing hyperparameter, an unknown mode, mismatched channels: tests/test_errors.py)


def test_conv_forward_rejects_a_kernel_larger_than_the_padded_image():
    with pytest.raises(ShapeError, match=r"padded image is 4 along n_H_prev"):
        course.conv_forward(np.ones((1, 2, 2, 1)), np.ones((5, 5, 1, 1)), np.ones((1, 1, 1, 1)),
                            {"stride": 1, "pad": 1})  # fmt: skip


def test_conv_backward_rejects_a_dZ_of_the_wrong_shape():
    _, cache = course.conv_forward(
        np.ones((2, 4, 4, 1)), np.ones((3, 3, 1, 2)), np.ones((1, 1, 1, 2)), {"stride": 1, "pad": 0}
    )
    with pytest.raises(ShapeError, match=r"expected `dZ` of shape \(2, 2, 2, 2\)"):
        course.conv_backward(np.ones((2, 2, 2, 3)), cache)
