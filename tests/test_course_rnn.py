"""The course's C5W1A1 API (`mg.course.rnn_*`, `lstm_*`) against the notebook and an oracle.

"Building a Recurrent Neural Network – Step by Step" (greyhatguy007/
deep-learning-specialization@dcc0454, C5-sequence-models/week1/C5W1A1/
Building_a_Recurrent_Neural_Network_Step_by_Step.ipynb): each test below replays one
of the notebook's test cells — the same `np.random.seed(1)` draws in the same order —
and asserts that our functions print the notebook's expected outputs to the digits it
prints. The backward functions are also checked against `jax.vjp` of a forward pass
written here with jnp alone, in float64.
"""

from __future__ import annotations

import re

import jax
import jax.numpy as jnp
import numpy as np

from helpers import F64_TOL, rel_err
from manualgrad import course


def assert_printed(got, printed: str) -> None:
    """Every number of `printed` equals `got` (flattened) to the decimals printed there."""
    tokens = re.findall(r"-?\d+\.\d+(?:e-?\d+)?", printed)
    values = np.ravel(np.asarray(got))
    assert len(tokens) == values.size, (tokens, values)
    for token, value in zip(tokens, values, strict=True):
        decimals = len(token.split(".")[1])
        assert abs(value - float(token)) <= 0.5 * 10.0**-decimals, (token, value)


def rnn_parameters(n_a=5, n_x=3, n_y=2):
    """The notebook's draw order for the RNN's parameters."""
    return {
        "Waa": np.random.randn(n_a, n_a),
        "Wax": np.random.randn(n_a, n_x),
        "Wya": np.random.randn(n_y, n_a),
        "ba": np.random.randn(n_a, 1),
        "by": np.random.randn(n_y, 1),
    }


def lstm_parameters(with_output=True):
    """The notebook's draw order for the LSTM's parameters (5 units, 3 inputs, 2 outputs)."""
    p = {}
    for gate in "fioc":  # the notebook draws Wf, bf, Wi, bi, Wo, bo, Wc, bc
        p[f"W{gate}"] = np.random.randn(5, 5 + 3)
        p[f"b{gate}"] = np.random.randn(5, 1)
    if with_output:
        p["Wy"], p["by"] = np.random.randn(2, 5), np.random.randn(2, 1)
    else:  # lstm_backward's cell: "unused, but needed for lstm_forward"
        p["Wy"], p["by"] = np.zeros((2, 5)), np.zeros((2, 1))
    return p


def test_rnn_cell_forward_prints_the_notebooks_expected_output(x64):
    np.random.seed(1)
    xt, a_prev = np.random.randn(3, 10), np.random.randn(5, 10)
    a_next, yt_pred, cache = course.rnn_cell_forward(xt, a_prev, rnn_parameters())
    assert_printed(
        a_next[4],
        "[ 0.59584544  0.18141802  0.61311866  0.99808218  0.85016201  0.99980978"
        " -0.18887155  0.99815551  0.6531151   0.82872037]",
    )
    assert_printed(
        yt_pred[1],
        "[0.9888161  0.01682021 0.21140899 0.36817467 0.98988387 0.88945212"
        " 0.36920224 0.9966312  0.9982559  0.17746526]",
    )
    assert (a_next.shape, yt_pred.shape, len(cache)) == ((5, 10), (2, 10), 4)


def test_rnn_forward_prints_the_notebooks_expected_output(x64):
    np.random.seed(1)
    x, a0 = np.random.randn(3, 10, 4), np.random.randn(5, 10)
    a, y_pred, caches = course.rnn_forward(x, a0, rnn_parameters())
    assert_printed(a[4][1], "[-0.99999375  0.77911235 -0.99861469 -0.99833267]")
    assert_printed(y_pred[1][3], "[0.79560373 0.86224861 0.11118257 0.81515947]")
    assert_printed(caches[1][1][3], "[-1.1425182  -0.34934272 -0.20889423  0.58662319]")
    assert (a.shape, y_pred.shape, len(caches)) == ((5, 10, 4), (2, 10, 4), 2)


def test_lstm_cell_forward_prints_the_notebooks_expected_output(x64):
    np.random.seed(1)
    xt, a_prev, c_prev = (np.random.randn(n, 10) for n in (3, 5, 5))
    a_next, c_next, yt, cache = course.lstm_cell_forward(xt, a_prev, c_prev, lstm_parameters())
    assert_printed(
        a_next[4],
        "[-0.66408471  0.0036921   0.02088357  0.22834167 -0.85575339  0.00138482"
        "  0.76566531  0.34631421 -0.00215674  0.43827275]",
    )
    assert_printed(
        c_next[2],
        "[ 0.63267805  1.00570849  0.35504474  0.20690913 -1.64566718  0.11832942"
        "  0.76449811 -0.0981561  -0.74348425 -0.26810932]",
    )
    assert_printed(
        yt[1],
        "[0.79913913 0.15986619 0.22412122 0.15606108 0.97057211 0.31146381"
        " 0.00943007 0.12666353 0.39380172 0.07828381]",
    )
    assert_printed(
        cache[1][3],
        "[-0.16263996  1.03729328  0.72938082 -0.54101719  0.02752074 -0.30821874"
        "  0.07651101 -1.03752894  1.41219977 -0.37647422]",
    )
    assert len(cache) == 10


def test_lstm_forward_prints_the_notebooks_expected_output(x64):
    np.random.seed(1)
    x, a0 = np.random.randn(3, 10, 7), np.random.randn(5, 10)
    a, y, c, caches = course.lstm_forward(x, a0, lstm_parameters())
    assert_printed(a[4][3][6], "0.172117767533")
    assert_printed(y[1][4][3], "0.95087346185")
    assert_printed(
        caches[1][1][1],
        "[ 0.82797464  0.23009474  0.76201118 -0.22232814 -0.20075807  0.18656139  0.41005165]",
    )
    assert_printed(c[1][2][1], "-0.855544916718")
    assert (a.shape, y.shape, len(caches)) == ((5, 10, 7), (2, 10, 7), 2)


def test_rnn_cell_backward_prints_the_notebooks_expected_output(x64):
    np.random.seed(1)
    xt, a_prev = np.random.randn(3, 10), np.random.randn(5, 10)
    p = {
        "Wax": np.random.randn(5, 3),
        "Waa": np.random.randn(5, 5),
        "Wya": np.random.randn(2, 5),
        "ba": np.random.randn(5, 1),
        "by": np.random.randn(2, 1),
    }
    _, _, cache = course.rnn_cell_forward(xt, a_prev, p)
    g = course.rnn_cell_backward(np.random.randn(5, 10), cache)
    assert_printed(g["dxt"][1][2], "-1.3872130506")
    assert_printed(g["da_prev"][2][3], "-0.152399493774")
    assert_printed(g["dWax"][3][1], "0.410772824935")
    assert_printed(g["dWaa"][1][2], "1.15034506685")
    assert_printed(g["dba"][4], "[ 0.20023491]")
    shapes = {k: v.shape for k, v in g.items()}
    assert shapes == {
        "dxt": (3, 10),
        "da_prev": (5, 10),
        "dWax": (5, 3),
        "dWaa": (5, 5),
        "dba": (5, 1),
    }


def test_rnn_backward_prints_the_notebooks_expected_output(x64):
    np.random.seed(1)
    x, a0 = np.random.randn(3, 10, 4), np.random.randn(5, 10)
    p = {
        "Wax": np.random.randn(5, 3),
        "Waa": np.random.randn(5, 5),
        "Wya": np.random.randn(2, 5),
        "ba": np.random.randn(5, 1),
        "by": np.random.randn(2, 1),
    }
    _, _, caches = course.rnn_forward(x, a0, p)
    g = course.rnn_backward(np.random.randn(5, 10, 4), caches)
    assert_printed(g["dx"][1][2], "[-2.07101689 -0.59255627  0.02466855  0.01483317]")
    assert_printed(g["da0"][2][3], "-0.314942375127")
    assert_printed(g["dWax"][3][1], "11.2641044965")
    assert_printed(g["dWaa"][1][2], "2.30333312658")
    assert_printed(g["dba"][4], "[-0.74747722]")
    assert (g["dx"].shape, g["da0"].shape) == ((3, 10, 4), (5, 10))


def test_lstm_cell_backward_prints_the_notebooks_expected_output(x64):
    np.random.seed(1)
    xt, a_prev, c_prev = (np.random.randn(n, 10) for n in (3, 5, 5))
    _, _, _, cache = course.lstm_cell_forward(xt, a_prev, c_prev, lstm_parameters())
    da_next, dc_next = np.random.randn(5, 10), np.random.randn(5, 10)
    g = course.lstm_cell_backward(da_next, dc_next, cache)
    expected = {
        ("dxt", 1, 2): "3.23055911511",
        ("da_prev", 2, 3): "-0.0639621419711",
        ("dc_prev", 2, 3): "0.797522038797",
        ("dWf", 3, 1): "-0.147954838164",
        ("dWi", 1, 2): "1.05749805523",
        ("dWc", 3, 1): "2.30456216369",
        ("dWo", 1, 2): "0.331311595289",
        ("dbf", 4, 0): "0.18864637",
        ("dbi", 4, 0): "-0.40142491",
        ("dbc", 4, 0): "0.25587763",
        ("dbo", 4, 0): "0.13893342",
    }
    for (key, i, j), printed in expected.items():
        assert_printed(g[key][i][j], printed)
    assert g["dWf"].shape == (5, 8) and g["dbo"].shape == (5, 1) and g["dxt"].shape == (3, 10)


def test_lstm_backward_prints_the_notebooks_expected_output(x64):
    """The notebook's cell draws x with T_x = 7 but da with 4 steps: the backward runs over
    da's 4 steps (`n_a, m, T_x = da.shape`), as the notebook's solution does."""
    np.random.seed(1)
    x, a0 = np.random.randn(3, 10, 7), np.random.randn(5, 10)
    _, _, _, caches = course.lstm_forward(x, a0, lstm_parameters(with_output=False))
    g = course.lstm_backward(np.random.randn(5, 10, 4), caches)
    assert_printed(g["dx"][1][2], "[0.00218254  0.28205375 -0.48292508 -0.43281115]")
    expected = {
        ("da0", 2, 3): "0.312770310257",
        ("dWf", 3, 1): "-0.0809802310938",
        ("dWi", 1, 2): "0.40512433093",
        ("dWc", 3, 1): "-0.0793746735512",
        ("dWo", 1, 2): "0.038948775763",
        ("dbf", 4, 0): "-0.15745657",
        ("dbi", 4, 0): "-0.50848333",
        ("dbc", 4, 0): "-0.42510818",
        ("dbo", 4, 0): "-0.17958196",
    }
    for (key, i, j), printed in expected.items():
        assert_printed(g[key][i][j], printed)
    assert (g["dx"].shape, g["da0"].shape) == ((3, 10, 4), (5, 10))


# ---------------------------------------------------------------------------------------
# The backward passes against jax.vjp of a forward pass written here, in float64
# ---------------------------------------------------------------------------------------


def oracle_rnn_states(x, a0, Wax, Waa, ba):
    """a (n_a, m, T_x): a_t = tanh(Waa a_{t-1} + Wax x_t + ba), jnp alone."""
    a, states = a0, []
    for t in range(x.shape[2]):
        a = jnp.tanh(Waa @ a + Wax @ x[:, :, t] + ba)
        states.append(a)
    return jnp.stack(states, axis=-1)


def oracle_lstm_states(x, a0, p):
    """a (n_a, m, T_x) of the course's LSTM cell from c_0 = 0, jnp and jax.nn alone."""
    a, c, states = a0, jnp.zeros_like(a0), []
    for t in range(x.shape[2]):
        s = jnp.concatenate([a, x[:, :, t]])
        f = jax.nn.sigmoid(p["Wf"] @ s + p["bf"])
        i = jax.nn.sigmoid(p["Wi"] @ s + p["bi"])
        c = f * c + i * jnp.tanh(p["Wc"] @ s + p["bc"])
        a = jax.nn.sigmoid(p["Wo"] @ s + p["bo"]) * jnp.tanh(c)
        states.append(a)
    return jnp.stack(states, axis=-1)


def test_rnn_backward_is_the_vjp_of_the_forward_pass_in_float64(x64):
    rng = np.random.default_rng(3)  # the notebook's shapes: n_x = 3, n_a = 5, m = 10, T = 4
    x, a0 = rng.standard_normal((3, 10, 4)), rng.standard_normal((5, 10))
    p = {"Wax": (5, 3), "Waa": (5, 5), "Wya": (2, 5), "ba": (5, 1), "by": (2, 1)}
    p = {k: rng.standard_normal(s) for k, s in p.items()}
    da = rng.standard_normal((5, 10, 4))

    @jax.jit
    def oracle(x, a0, Wax, Waa, ba, da):
        return jax.vjp(oracle_rnn_states, x, a0, Wax, Waa, ba)[1](da)

    dx, da0, dWax, dWaa, dba = oracle(x, a0, p["Wax"], p["Waa"], p["ba"], da)
    _, _, caches = course.rnn_forward(x, a0, p)
    want = {"dx": dx, "da0": da0, "dWax": dWax, "dWaa": dWaa, "dba": dba}
    assert rel_err(course.rnn_backward(da, caches), want) <= F64_TOL


def test_lstm_backward_is_the_vjp_of_the_forward_pass_in_float64(x64):
    rng = np.random.default_rng(4)
    n_x, n_a, m, T = 3, 5, 10, 4  # the notebook's shapes
    x, a0 = rng.standard_normal((n_x, m, T)), rng.standard_normal((n_a, m))
    p = {f"{w}{g}": rng.standard_normal((n_a, n_a + n_x) if w == "W" else (n_a, 1))
         for g in "fico" for w in "Wb"}  # fmt: skip
    p["Wy"], p["by"] = rng.standard_normal((2, n_a)), rng.standard_normal((2, 1))
    da = rng.standard_normal((n_a, m, T))
    gates = {k: v for k, v in p.items() if k not in ("Wy", "by")}

    @jax.jit
    def oracle(x, a0, gates, da):
        return jax.vjp(oracle_lstm_states, x, a0, gates)[1](da)

    dx, da0, dp = oracle(x, a0, gates, da)
    _, _, _, caches = course.lstm_forward(x, a0, p)
    want = {"dx": dx, "da0": da0, **{f"d{k}": v for k, v in dp.items()}}
    assert rel_err(course.lstm_backward(da, caches), want) <= F64_TOL
