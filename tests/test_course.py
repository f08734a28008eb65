"""Golden tests for `manualgrad.course`, the Deep Learning Specialization's API.

Three kinds of oracle, none of them the code under test:
- tiny cases whose expected values are derived by hand in the comments;
- the course's published expected outputs for its own test cases (course 1 week 4,
  course 2 week 1), rebuilt from the same `np.random.seed` calls — NumPy's legacy
  stream is frozen, so these inputs are exactly the course's;
- `jax.grad` / `jax.vjp` of an independent jax.numpy transcription of the course's cost.
"""

from __future__ import annotations

import math

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from helpers import rel_err
from manualgrad import course
from manualgrad._errors import ConfigError, ShapeError

# The course prints 8 decimals; its values are float64.
PRINTED = {"rtol": 0, "atol": 1e-8}


# ------------------------------------------------------------------ hand-derived tiny cases


def test_linear_forward_is_W_times_A_plus_b_on_a_2x2_case():
    A = np.array([[1.0, 2.0], [3.0, 4.0]])
    W = np.array([[1.0, -1.0], [2.0, 0.0]])
    b = np.array([[1.0], [-1.0]])
    # row 1: [1 - 3, 2 - 4] + 1 = [-1, -1];  row 2: [2, 4] - 1 = [1, 3]
    Z, cache = course.linear_forward(A, W, b)
    np.testing.assert_array_equal(Z, [[-1.0, -1.0], [1.0, 3.0]])
    assert len(cache) == 3
    for cached, given in zip(cache, (A, W, b), strict=True):
        np.testing.assert_array_equal(cached, given)


def test_relu_clips_negatives_and_caches_Z():
    Z = np.array([[-2.0, 0.0, 3.0]])
    A, cache = course.relu(Z)
    np.testing.assert_array_equal(A, [[0.0, 0.0, 3.0]])
    np.testing.assert_array_equal(cache, Z)


def test_sigmoid_at_known_points():
    # σ(0) = 1/2, σ(ln 3) = 1/(1 + 1/3) = 3/4, σ(−ln 3) = 1/4
    Z = np.array([[0.0, math.log(3.0), -math.log(3.0)]], np.float32)
    A, cache = course.sigmoid(Z)
    np.testing.assert_allclose(A, [[0.5, 0.75, 0.25]], rtol=1e-6)
    np.testing.assert_array_equal(cache, Z)


def test_relu_backward_passes_dA_only_where_Z_is_positive_with_zero_at_zero():
    dA = np.array([[1.0, 2.0, 3.0]])
    Z = np.array([[-1.0, 0.0, 2.0]])
    np.testing.assert_array_equal(course.relu_backward(dA, Z), [[0.0, 0.0, 3.0]])


def test_sigmoid_backward_multiplies_by_a_times_one_minus_a():
    # Z = 0: a = 1/2, a(1 − a) = 1/4;  Z = ln 3: a = 3/4, a(1 − a) = 3/16, times dA = 2 → 3/8
    dA = np.array([[1.0, 2.0]], np.float32)
    Z = np.array([[0.0, math.log(3.0)]], np.float32)
    np.testing.assert_allclose(course.sigmoid_backward(dA, Z), [[0.25, 0.375]], rtol=1e-6)


def test_compute_cost_on_three_examples_is_the_hand_computed_cross_entropy(x64):
    AL = np.array([[0.8, 0.9, 0.4]])
    Y = np.array([[1, 1, 0]])
    # −(1/3)[ln 0.8 + ln 0.9 + ln(1 − 0.4)]
    expected = -(math.log(0.8) + math.log(0.9) + math.log(0.6)) / 3
    cost = course.compute_cost(AL, Y)
    assert cost.shape == ()
    assert float(cost) == pytest.approx(expected, rel=1e-15)
    assert float(cost) == pytest.approx(0.2797765635793422, rel=1e-15)  # the course's print


def test_compute_cost_accepts_labels_of_shape_m_and_rejects_a_wrong_count():
    AL = np.array([[0.8, 0.9, 0.4]], np.float32)
    np.testing.assert_allclose(
        course.compute_cost(AL, np.array([1, 1, 0])),
        course.compute_cost(AL, np.array([[1, 1, 0]])),
    )
    with pytest.raises(ShapeError, match="one label per column"):
        course.compute_cost(AL, np.array([[1, 0]]))


def test_compute_cost_with_regularization_adds_lambda_over_2m_times_squared_weights(x64):
    AL = np.array([[0.8, 0.4]])
    Y = np.array([[1, 0]])
    params = {
        "W1": np.array([[1.0, 2.0]]),
        "b1": np.array([[5.0]]),  # biases are not regularised
        "W2": np.array([[3.0]]),
        "b2": np.array([[7.0]]),
    }
    # cross-entropy: −(ln 0.8 + ln 0.6)/2;  L2: 0.4 / (2·2) · (1 + 4 + 9) = 1.4
    expected = -(math.log(0.8) + math.log(0.6)) / 2 + 1.4
    got = course.compute_cost_with_regularization(AL, Y, params, 0.4)
    assert float(got) == pytest.approx(expected, rel=1e-14)


def test_update_parameters_takes_one_gradient_step_and_ignores_dA_keys():
    params = {"W1": np.array([[1.0, 2.0]]), "b1": np.array([[3.0]])}
    grads = {"dW1": np.array([[10.0, -20.0]]), "db1": np.array([[1.0]]), "dA0": np.ones((2, 1))}
    new = course.update_parameters(params, grads, 0.1)
    assert sorted(new) == ["W1", "b1"]
    np.testing.assert_allclose(new["W1"], [[0.0, 4.0]], atol=1e-6)  # 1 − 1, 2 + 2
    np.testing.assert_allclose(new["b1"], [[2.9]], rtol=1e-6)  # 3 − 0.1
    np.testing.assert_array_equal(params["W1"], [[1.0, 2.0]])  # input left alone


def test_update_parameters_names_missing_gradients():
    params = {"W1": np.ones((1, 2)), "b1": np.ones((1, 1))}
    with pytest.raises(ShapeError, match=r"missing \['db1'\]"):
        course.update_parameters(params, {"dW1": np.ones((1, 2))}, 0.1)


# --------------------------------------------------------- the course's published outputs


def test_initialize_parameters_deep_reproduces_the_course_with_seed_3(x64):
    params = course.initialize_parameters_deep([5, 4, 3])
    assert list(params) == ["W1", "b1", "W2", "b2"]
    np.testing.assert_allclose(
        params["W1"],
        [
            [0.01788628, 0.0043651, 0.00096497, -0.01863493, -0.00277388],
            [-0.00354759, -0.00082741, -0.00627001, -0.00043818, -0.00477218],
            [-0.01313865, 0.00884622, 0.00881318, 0.01709573, 0.00050034],
            [-0.00404677, -0.0054536, -0.01546477, 0.00982367, -0.01101068],
        ],
        **PRINTED,
    )
    np.testing.assert_allclose(
        params["W2"],
        [
            [-0.01185047, -0.0020565, 0.01486148, 0.00236716],
            [-0.01023785, -0.00712993, 0.00625245, -0.00160513],
            [-0.00768836, -0.00230031, 0.00745056, 0.01976111],
        ],
        **PRINTED,
    )
    np.testing.assert_array_equal(params["b1"], np.zeros((4, 1)))
    np.testing.assert_array_equal(params["b2"], np.zeros((3, 1)))


def test_initialize_parameters_deep_leaves_numpys_global_random_state_alone():
    np.random.seed(123)
    expected = np.random.randn(3)
    np.random.seed(123)
    course.initialize_parameters_deep([3, 2, 1])
    np.testing.assert_array_equal(np.random.randn(3), expected)


def test_initialize_parameters_deep_with_a_key_draws_randn_times_0_01_from_jax():
    params = course.initialize_parameters_deep([300, 100], key=jax.random.key(0))
    again = course.initialize_parameters_deep([300, 100], key=jax.random.key(0))
    np.testing.assert_array_equal(params["W1"], again["W1"])
    assert params["W1"].shape == (100, 300) and params["b1"].shape == (100, 1)
    assert float(jnp.std(params["W1"])) == pytest.approx(0.01, rel=0.02)  # 30 000 draws
    np.testing.assert_array_equal(params["b1"], 0)


def test_linear_forward_matches_the_courses_expected_output(x64):
    np.random.seed(1)
    A, W, b = np.random.randn(3, 2), np.random.randn(1, 3), np.random.randn(1, 1)
    Z, _ = course.linear_forward(A, W, b)
    np.testing.assert_allclose(Z, [[3.26295337, -1.23429987]], **PRINTED)


def test_linear_activation_forward_matches_the_courses_expected_output(x64):
    np.random.seed(2)
    A_prev, W, b = np.random.randn(3, 2), np.random.randn(1, 3), np.random.randn(1, 1)
    A_sig, _ = course.linear_activation_forward(A_prev, W, b, "sigmoid")
    A_relu, _ = course.linear_activation_forward(A_prev, W, b, "relu")
    np.testing.assert_allclose(A_sig, [[0.96890023, 0.11013289]], **PRINTED)
    np.testing.assert_allclose(A_relu, [[3.43896131, 0.0]], **PRINTED)


def _course_L_model_forward_case():
    np.random.seed(6)
    X = np.random.randn(5, 4)
    W1, b1 = np.random.randn(4, 5), np.random.randn(4, 1)
    W2, b2 = np.random.randn(3, 4), np.random.randn(3, 1)
    W3, b3 = np.random.randn(1, 3), np.random.randn(1, 1)
    return X, {"W1": W1, "b1": b1, "W2": W2, "b2": b2, "W3": W3, "b3": b3}


def test_L_model_forward_matches_the_courses_expected_output(x64):
    X, params = _course_L_model_forward_case()
    AL, caches = course.L_model_forward(X, params)
    np.testing.assert_allclose(AL, [[0.03921668, 0.70498921, 0.19734387, 0.04728177]], **PRINTED)
    assert len(caches) == 3


def test_L_model_forward_matches_the_course_to_float32_precision_without_x64():
    X, params = _course_L_model_forward_case()
    with jax.default_matmul_precision("highest"):
        AL, _ = course.L_model_forward(X, params)
    assert AL.dtype == jnp.float32
    np.testing.assert_allclose(AL, [[0.03921668, 0.70498921, 0.19734387, 0.04728177]], rtol=1e-5)


def test_linear_backward_matches_the_courses_expected_output(x64):
    np.random.seed(1)
    dZ, A, W = np.random.randn(3, 4), np.random.randn(5, 4), np.random.randn(3, 5)
    b = np.random.randn(3, 1)
    dA_prev, dW, db = course.linear_backward(dZ, (A, W, b))
    expected_dA_prev = [
        [-1.15171336, 0.06718465, -0.3204696, 2.09812712],
        [0.60345879, -3.72508701, 5.81700741, -3.84326836],
        [-0.4319552, -1.30987417, 1.72354705, 0.05070578],
        [-0.38981415, 0.60811244, -1.25938424, 1.47191593],
        [-2.52214926, 2.67882552, -0.67947465, 1.48119548],
    ]
    expected_dW = [
        [0.07313866, -0.0976715, -0.87585828, 0.73763362, 0.00785716],
        [0.85508818, 0.37530413, -0.59912655, 0.71278189, -0.58931808],
        [0.97913304, -0.24376494, -0.08839671, 0.55151192, -0.10290907],
    ]
    np.testing.assert_allclose(dA_prev, expected_dA_prev, **PRINTED)
    np.testing.assert_allclose(dW, expected_dW, **PRINTED)
    np.testing.assert_allclose(db, [[-0.14713786], [-0.11313155], [-0.13209101]], **PRINTED)


@pytest.mark.parametrize(
    ("activation", "dA_prev", "dW", "db"),
    [
        (
            "sigmoid",
            [[0.11017994, 0.01105339], [0.09466817, 0.00949723], [-0.05743092, -0.00576154]],
            [[0.10266786, 0.09778551, -0.01968084]],
            [[-0.05729622]],
        ),
        (
            "relu",
            [[0.44090989, 0.0], [0.37883606, 0.0], [-0.2298228, 0.0]],
            [[0.44513824, 0.37371418, -0.10478989]],
            [[-0.20837892]],
        ),
    ],
    ids=["sigmoid", "relu"],
)
def test_linear_activation_backward_matches_the_courses_expected_output(
    x64, activation, dA_prev, dW, db
):
    np.random.seed(2)
    dA, A, W = np.random.randn(1, 2), np.random.randn(3, 2), np.random.randn(1, 3)
    b, Z = np.random.randn(1, 1), np.random.randn(1, 2)
    got = course.linear_activation_backward(dA, ((A, W, b), Z), activation)
    for g, expected in zip(got, (dA_prev, dW, db), strict=True):
        np.testing.assert_allclose(g, expected, **PRINTED)


def test_L_model_backward_matches_the_courses_expected_output(x64):
    np.random.seed(3)
    AL, Y = np.random.randn(1, 2), np.array([[1, 0]])
    A1, W1, b1 = np.random.randn(4, 2), np.random.randn(3, 4), np.random.randn(3, 1)
    Z1 = np.random.randn(3, 2)
    A2, W2, b2 = np.random.randn(3, 2), np.random.randn(1, 3), np.random.randn(1, 1)
    Z2 = np.random.randn(1, 2)
    grads = course.L_model_backward(AL, Y, [((A1, W1, b1), Z1), ((A2, W2, b2), Z2)])
    np.testing.assert_allclose(
        grads["dW1"],
        [
            [0.41010002, 0.07807203, 0.13798444, 0.10502167],
            [0.0, 0.0, 0.0, 0.0],
            [0.05283652, 0.01005865, 0.01777766, 0.0135308],
        ],
        **PRINTED,
    )
    np.testing.assert_allclose(grads["db1"], [[-0.22007063], [0.0], [-0.02835349]], **PRINTED)
    np.testing.assert_allclose(
        grads["dA1"],
        [[0.12913162, -0.44014127], [-0.14175655, 0.48317296], [0.01663708, -0.05670698]],
        **PRINTED,
    )


def test_compute_cost_with_regularization_matches_the_courses_expected_output(x64):
    np.random.seed(1)
    Y = np.array([[1, 1, 0, 1, 0]])
    W1, b1 = np.random.randn(2, 3), np.random.randn(2, 1)
    W2, b2 = np.random.randn(3, 2), np.random.randn(3, 1)
    W3, b3 = np.random.randn(1, 3), np.random.randn(1, 1)
    params = {"W1": W1, "b1": b1, "W2": W2, "b2": b2, "W3": W3, "b3": b3}
    A3 = np.array([[0.40682402, 0.01629284, 0.16722898, 0.10118111, 0.40682402]])
    cost = course.compute_cost_with_regularization(A3, Y, params, 0.1)
    assert float(cost) == pytest.approx(1.78648594516, abs=1e-11)


# ------------------------------------------------------------------- caches and dict keys


def test_L_model_forward_caches_are_laid_out_as_in_the_course():
    rng = np.random.default_rng(0)
    dims, m = [4, 5, 3, 1], 6
    params = course.initialize_parameters_deep(dims)
    X = rng.standard_normal((4, m)).astype(np.float32)
    AL, caches = course.L_model_forward(X, params)
    assert AL.shape == (1, m)
    assert isinstance(caches, list) and len(caches) == 3
    for l, (linear_cache, Z) in enumerate(caches, start=1):
        A_prev, W, b = linear_cache
        assert A_prev.shape == (dims[l - 1], m)
        assert W.shape == (dims[l], dims[l - 1]) and b.shape == (dims[l], 1)
        assert Z.shape == (dims[l], m)
        np.testing.assert_array_equal(W, params[f"W{l}"])
    np.testing.assert_array_equal(caches[0][0][0], X)
    # layer l+1's A_prev is relu(Z[l]) for the hidden layers
    for l in (0, 1):
        np.testing.assert_array_equal(caches[l + 1][0][0], np.maximum(caches[l][1], 0))


def test_L_model_backward_returns_exactly_the_courses_keys_and_shapes():
    dims, m = [4, 5, 3, 1], 6
    params = course.initialize_parameters_deep(dims)
    X = np.random.default_rng(0).standard_normal((4, m)).astype(np.float32)
    Y = np.array([[1, 0, 1, 1, 0, 0]])
    AL, caches = course.L_model_forward(X, params)
    grads = course.L_model_backward(AL, Y, caches)
    assert set(grads) == {"dA0", "dA1", "dA2", "dW1", "dW2", "dW3", "db1", "db2", "db3"}
    for l in (1, 2, 3):
        assert grads[f"dW{l}"].shape == (dims[l], dims[l - 1])
        assert grads[f"db{l}"].shape == (dims[l], 1)
        assert grads[f"dA{l - 1}"].shape == (dims[l - 1], m)


# ---------------------------------------------------------- L_model_backward vs jax.grad


def _oracle_cost(params, X, Y, deltas):
    """The course's cost, written independently: relu hidden layers, sigmoid output.

    deltas[l] is added to A[l] (l = 0 … L-1), so ∂C/∂deltas[l] = ∂C/∂A[l].
    """
    n_layers = len(params) // 2
    A = X + deltas[0]
    for l in range(1, n_layers + 1):
        Z = jnp.dot(params[f"W{l}"], A, precision="highest") + params[f"b{l}"]
        A = jnp.maximum(Z, 0) + deltas[l] if l < n_layers else 1 / (1 + jnp.exp(-Z))
    m = X.shape[1]
    return -jnp.sum(Y * jnp.log(A) + (1 - Y) * jnp.log(1 - A)) / m


@pytest.mark.parametrize("dims", [[3, 1], [3, 6, 4, 2, 1]], ids=["L1", "L4"])
def test_L_model_backward_equals_jax_grad_of_the_course_cost(x64, dims):
    m = 7
    rng = np.random.default_rng(len(dims))
    params = {}
    for l in range(1, len(dims)):
        params[f"W{l}"] = jnp.asarray(rng.standard_normal((dims[l], dims[l - 1])) * 0.7)
        params[f"b{l}"] = jnp.asarray(rng.standard_normal((dims[l], 1)) * 0.1)
    X = jnp.asarray(rng.standard_normal((dims[0], m)))
    Y = jnp.asarray(rng.integers(0, 2, (1, m)).astype(np.float64))
    deltas = [jnp.zeros((n, m)) for n in dims[:-1]]

    AL, caches = course.L_model_forward(X, params)
    grads = course.L_model_backward(AL, Y, caches)
    d_params, d_deltas = jax.jit(jax.grad(_oracle_cost, argnums=(0, 3)))(params, X, Y, deltas)

    for k in params:
        assert rel_err(grads[f"d{k}"], d_params[k]) <= 1e-12, k
    for l, d in enumerate(d_deltas):
        # the course's dA[l] is the derivative of each example's loss L_i: m · ∂C/∂A[l]
        assert rel_err(grads[f"dA{l}"], m * d) <= 1e-12, f"dA{l}"


def test_compute_cost_equals_the_independent_course_cost(x64):
    X, params = _course_L_model_forward_case()
    Y = np.array([[1.0, 0.0, 0.0, 1.0]])
    AL, _ = course.L_model_forward(X, params)
    deltas = [jnp.zeros((n, 4)) for n in (5, 4, 3)]
    expected = jax.jit(_oracle_cost)({k: jnp.asarray(v) for k, v in params.items()}, X, Y, deltas)
    assert float(course.compute_cost(AL, Y)) == pytest.approx(float(expected), rel=1e-14)


# --------------------------------------------------------------------------------- errors


def test_linear_forward_rejects_a_transposed_A():
    with pytest.raises(ShapeError, match="examples must be columns"):
        course.linear_forward(np.ones((4, 3)), np.ones((2, 3)), np.ones((2, 1)))


def test_L_model_forward_rejects_a_transposed_X():
    params = course.initialize_parameters_deep([3, 2, 1])
    with pytest.raises(ShapeError, match="transposed"):
        course.L_model_forward(np.ones((5, 3), np.float32), params)


@pytest.mark.parametrize("name", ["softmax", "swish"])
def test_linear_activation_forward_rejects_non_elementwise_or_unknown_activations(name):
    with pytest.raises(ConfigError, match="relu"):
        course.linear_activation_forward(np.ones((2, 1)), np.ones((1, 2)), np.ones((1, 1)), name)


def test_numpy_and_jax_inputs_give_the_same_result():
    X, params = _course_L_model_forward_case()
    AL_np, _ = course.L_model_forward(X.astype(np.float32), params)
    AL_jax, _ = course.L_model_forward(
        jnp.asarray(X, jnp.float32), {k: jnp.asarray(v, jnp.float32) for k, v in params.items()}
    )
    np.testing.assert_array_equal(AL_np, AL_jax)
