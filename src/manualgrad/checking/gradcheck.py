r"""Gradient checking for your own derivations: the course's metric, finite differences, jax.grad.

| name      | meaning                                                                 |
|-----------|-------------------------------------------------------------------------|
| `g`       | a gradient to check, e.g. hand-written backward output (any pytree)     |
| `g_approx`| a reference gradient with the same tree structure                       |
| `cost_fn` | `params -> scalar`, the cost whose gradient `g` claims to be            |
| `eps`     | the central-difference step ε                                           |

The course's relative difference (course 2 week 1, "Gradient Checking"), over all
leaves flattened into one vector, is

$$\mathrm{diff}(g, \tilde g) = \frac{\lVert g - \tilde g \rVert_2}
  {\lVert g \rVert_2 + \lVert \tilde g \rVert_2} \in [0, 1],$$

and the central-difference gradient of parameter θ_i is

$$\tilde g_i = \frac{C(\theta + \varepsilon e_i) - C(\theta - \varepsilon e_i)}{2 \varepsilon},$$

whose error is O(ε²) from truncation plus O(u·|C| / ε) from rounding (u the unit
roundoff). In float64 with ε = 1e-6 both are around 1e-10 relative, so a correct
gradient scores far below 1e-6 and a wrong one (a missing 1/m, a transpose, a wrong
sign) scores near 1e-1 or more. In float32 rounding alone is ≈ 1e-1 at ε = 1e-6:
finite differences there cannot tell right from wrong, so they are float64 only.

>>> import jax, jax.numpy as jnp
>>> from manualgrad.checking.gradcheck import compare_with_autodiff
>>> with jax.enable_x64(True):
...     params = {"w": jnp.array([1.0, -2.0, 3.0])}
...     cost_fn = lambda p: jnp.sum(p["w"] ** 3) / 3
...     report = compare_with_autodiff({"w": 2 * params["w"]}, cost_fn, params)  # wrong: not w²
>>> report.passed, report.worst
(False, 'w')
"""

from __future__ import annotations

import math
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, NamedTuple

import jax
import jax.numpy as jnp
import numpy as np
from jax.flatten_util import ravel_pytree

from manualgrad._errors import DTypeError, ShapeError

if TYPE_CHECKING:
    from manualgrad._network import Network

__all__ = [
    "AUTODIFF_TOL",
    "EPS",
    "FD_TOL",
    "GradCheckReport",
    "ParamCheck",
    "compare_with_autodiff",
    "finite_difference_grads",
    "network_kinks",
    "relative_difference",
    "stencil_kinks",
]

Array = jax.Array
PyTree = Any

#: Default pass thresholds on the relative difference to jax.grad, by the params' dtype.
#: A correct hand-written gradient differs from jax.grad only by the order of
#: floating-point operations: measured ≤ 5e-16 per parameter on the default
#: `manualgrad check` network in float64. The float32 threshold assumes full float32
#: matmuls (`jax.default_matmul_precision("highest")`); GPUs default to TF32 (≈ 1e-3),
#: so pass `autodiff_tol` there.
AUTODIFF_TOL = {"float64": 1e-12, "float32": 1e-5}
#: Against central differences (float64, ε = 1e-6): truncation and rounding ≈ 1e-10–1e-8;
#: the course itself flags a mistake above 2e-7 (with ε = 1e-7).
FD_TOL = 1e-6
#: The default central-difference step ε (float64).
EPS = 1e-6


def _norm(leaves: list[np.ndarray]) -> float:
    return math.sqrt(sum(float(np.sum(np.square(x))) for x in leaves))


def relative_difference(g: PyTree, g_approx: PyTree) -> float:
    """‖g − g_approx‖ / (‖g‖ + ‖g_approx‖) over all leaves flattened into one vector.

    `g` and `g_approx` must have the same tree structure and leaf shapes (for dicts,
    the same keys). Returns a Python float in [0, 1]; 0.0 when both are exactly zero.
    """
    leaves, tree = jax.tree.flatten(g)
    leaves_approx, tree_approx = jax.tree.flatten(g_approx)
    if tree != tree_approx:
        raise ShapeError(
            f"expected `g` and `g_approx` to have the same structure, got {tree} and "
            f"{tree_approx} — compare gradients of the same params"
        )
    for a, b in zip(leaves, leaves_approx, strict=True):
        if jnp.shape(a) != jnp.shape(b):
            raise ShapeError(
                f"expected matching leaf shapes, got {jnp.shape(a)} and {jnp.shape(b)}"
            )
    # evaluated in NumPy float64: a report, not a traced computation
    leaves = [np.asarray(x, np.float64) for x in leaves]
    leaves_approx = [np.asarray(x, np.float64) for x in leaves_approx]
    numerator = _norm([a - b for a, b in zip(leaves, leaves_approx, strict=True)])
    denominator = _norm(leaves) + _norm(leaves_approx)
    if denominator == 0.0:
        return 0.0
    return numerator / denominator


def _check_float64(params: PyTree, what: str) -> None:
    dtypes = {str(jnp.result_type(x)) for x in jax.tree.leaves(params)}
    if dtypes != {"float64"}:
        raise DTypeError(
            f"{what} needs float64 params, got dtypes {sorted(dtypes)}: in float32 the "
            "rounding error of a central difference (≈ 1e-1 at eps = 1e-6) hides real bugs — "
            "run under `with jax.enable_x64(True):` with params and data cast to float64"
        )


def _map_over_coordinates(one: Callable[[Array], Any], n: int, batch_size: int) -> Any:
    """`one(i)` for i = 0 … n−1 under `jax.jit`: one vmapped batch, or `jax.lax.map` in batches."""
    indices = jnp.arange(n)
    if n <= batch_size:  # one vmapped batch: a single, smaller compilation
        return jax.jit(jax.vmap(one))(indices)
    return jax.jit(lambda i: jax.lax.map(one, i, batch_size=batch_size))(indices)


def finite_difference_grads(
    cost_fn: Callable[[PyTree], Array], params: PyTree, eps: float = EPS, batch_size: int = 256
) -> PyTree:
    """Central differences (C(θ + ε e_i) − C(θ − ε e_i)) / 2ε for every scalar θ_i of `params`.

    Returns a pytree like `params`. Needs float64 params (see the module notes). The
    parameters are raveled into one vector θ of length n; the 2n cost evaluations run
    under `jax.jit`, vmapped over batches of `batch_size` perturbed copies (`jax.lax.map`
    when n > batch_size), so memory stays O(batch_size · n).
    """
    _check_float64(params, "finite_difference_grads")
    theta, unravel = ravel_pytree(params)

    def one(i: Array) -> Array:
        step = jnp.zeros_like(theta).at[i].set(eps)
        return (cost_fn(unravel(theta + step)) - cost_fn(unravel(theta - step))) / (2 * eps)

    return unravel(_map_over_coordinates(one, theta.size, batch_size))


def stencil_kinks(
    pre_activations: Callable[[PyTree], Sequence[Array]],
    params: PyTree,
    eps: float = EPS,
    batch_size: int = 256,
) -> PyTree:
    r"""Which central differences straddle a kink: a pytree of bools like `params`.

    `pre_activations(params)` returns the pre-activations Z of every layer whose
    activation has a kink at z = 0 (relu, leaky_relu; see
    :data:`manualgrad._core.activations.ACTIVATIONS`' `kink_at_zero`). Entry θ_i is True when
    some z changes side of the kink within the stencil,

    $$[z(\theta + \varepsilon e_i) > 0] \neq [z(\theta - \varepsilon e_i) > 0].$$

    There the cost is not differentiable along e_i inside [θ_i − ε, θ_i + ε]: the
    central difference averages the two one-sided slopes (½ for relu at a tie) and
    says nothing about the subgradient a backward pass chose. A z exactly at 0 is
    common — zero biases plus a layer whose inputs were all dropped out give Z = b = 0.
    """
    _check_float64(params, "stencil_kinks")
    theta, unravel = ravel_pytree(params)

    def one(i: Array) -> Array:
        step = jnp.zeros_like(theta).at[i].set(eps)
        plus = pre_activations(unravel(theta + step))
        minus = pre_activations(unravel(theta - step))
        crossed = [jnp.any((zp > 0) != (zm > 0)) for zp, zm in zip(plus, minus, strict=True)]
        return jnp.any(jnp.stack(crossed)) if crossed else jnp.zeros((), bool)

    return unravel(_map_over_coordinates(one, theta.size, batch_size))


def network_kinks(net: Network, params: PyTree, X: Array, key: Array | None = None) -> list[Array]:
    """The pre-activations Z of `net`'s layers whose activation has a kink at 0, for `kinks`.

    Runs `net.forward(params, X, key)` (the same dropout masks as the cost's, from `key`)
    and returns, first layer first, Z of every layer whose activation record says
    `kink_at_zero` (relu, leaky_relu): what :func:`stencil_kinks` and the `kinks`
    argument of :func:`compare_with_autodiff` take,

        kinks=lambda p: network_kinks(net, p, X, key)

    A layer's Z and activation are read with `output_values(cache)`, which every layer
    that can end a network provides; other layers (none of which has a kinked
    activation yet) contribute nothing.
    """
    _, caches = net.forward(params, X, key)
    zs = []
    for layer, cache in zip(net.layers, caches.layers, strict=True):
        if layer.output_activation is None:
            continue
        Z, _, activation = layer.output_values(cache)
        if activation.kink_at_zero:
            zs.append(Z)
    return zs


def _leaf_names(tree: PyTree) -> list[str]:
    paths = [path for path, _ in jax.tree_util.tree_flatten_with_path(tree)[0]]
    names = []
    for path in paths:
        if len(path) == 1 and isinstance(path[0], jax.tree_util.DictKey):
            names.append(str(path[0].key))
        else:
            names.append(jax.tree_util.keystr(path) or "<root>")
    return names


def _as_params_tree(grads: PyTree, params: PyTree) -> PyTree:
    """Accept course-style grads {"dW1", "db1", "dA0", …} for params {"W1", "b1", …}."""
    if (
        isinstance(grads, Mapping)
        and isinstance(params, Mapping)
        and set(grads) != set(params)
        and all(f"d{k}" in grads for k in params)
    ):
        return {k: grads[f"d{k}"] for k in params}
    return grads


class ParamCheck(NamedTuple):
    """One parameter's result: its relative differences and whether both are under tolerance.

    `at_kink` counts the entries whose central difference straddles a kink
    (:func:`stencil_kinks`); `finite_difference` is measured over the other entries
    (None when finite differences were off, or every entry is at a kink).
    """

    name: str
    shape: tuple[int, ...]
    autodiff: float
    finite_difference: float | None
    passed: bool
    at_kink: int = 0


@dataclass(frozen=True)
class GradCheckReport:
    """Per-parameter relative differences of `grads` to jax.grad (and to finite differences).

    `rows` holds one :class:`ParamCheck` per leaf of params, in tree order; `worst` names
    the parameter furthest over (or closest to) its tolerances.
    """

    rows: tuple[ParamCheck, ...]
    autodiff: float
    finite_difference: float | None
    autodiff_tol: float
    fd_tol: float

    @property
    def passed(self) -> bool:
        return all(row.passed for row in self.rows)

    def _score(self, row: ParamCheck) -> float:
        fd = 0.0 if row.finite_difference is None else row.finite_difference / self.fd_tol
        score = max(row.autodiff / self.autodiff_tol, fd)
        return math.inf if math.isnan(score) else score

    @property
    def worst(self) -> str:
        return max(self.rows, key=self._score).name

    def to_dict(self) -> dict[str, Any]:
        """A JSON-ready dict."""
        return {
            "passed": self.passed,
            "worst": self.worst,
            "autodiff": self.autodiff,
            "finite_difference": self.finite_difference,
            "autodiff_tol": self.autodiff_tol,
            "fd_tol": self.fd_tol,
            "rows": [row._asdict() | {"shape": list(row.shape)} for row in self.rows],
        }


def compare_with_autodiff(
    grads: PyTree,
    cost_fn: Callable[[PyTree], Array],
    params: PyTree,
    *,
    finite_differences: bool = False,
    eps: float = EPS,
    autodiff_tol: float | None = None,
    fd_tol: float = FD_TOL,
    kinks: Callable[[PyTree], Sequence[Array]] | None = None,
) -> GradCheckReport:
    """Check hand-written `grads` against `jax.grad(cost_fn)(params)`, parameter by parameter.

    `grads` must have params' structure; for a dict of params, course-style grads
    ({"dW1", "db1", …}, extra keys such as "dA0" ignored) are accepted too. With
    `finite_differences=True` (float64 only) each parameter is also compared with
    :func:`finite_difference_grads`. `autodiff_tol` defaults to :data:`AUTODIFF_TOL`
    for the params' dtype; a row passes when every difference is ≤ its tolerance.

    `kinks(params)` returns the pre-activations of the layers whose activation has a
    kink at 0 (relu, leaky_relu). With it, entries whose central difference straddles
    a kink (:func:`stencil_kinks`) are left out of the finite-difference comparison
    and counted in each row's `at_kink`; jax.grad still checks them.
    """
    grads = _as_params_tree(grads, params)
    reference = jax.jit(jax.grad(cost_fn))(params)
    approx = finite_difference_grads(cost_fn, params, eps) if finite_differences else None
    at_kink = (
        stencil_kinks(kinks, params, eps)
        if finite_differences and kinks is not None
        else jax.tree.map(lambda x: np.zeros(np.shape(x), bool), params)
    )
    if autodiff_tol is None:
        dtype = str(jnp.result_type(*jax.tree.leaves(params)))
        autodiff_tol = AUTODIFF_TOL.get(dtype, AUTODIFF_TOL["float32"])
    g_leaves, g_tree = jax.tree.flatten(grads)
    ref_leaves, ref_tree = jax.tree.flatten(reference)
    if g_tree != ref_tree:
        raise ShapeError(
            f"expected `grads` with the structure of `params` ({ref_tree}), got {g_tree}"
        )
    fd_leaves = jax.tree.leaves(approx) if approx is not None else [None] * len(g_leaves)
    kink_leaves = [np.asarray(k) for k in jax.tree.leaves(at_kink)]
    rows = []
    smooth_g, smooth_fd = [], []  # the entries finite differences can judge
    for name, g, ref, fd, kink in zip(
        _leaf_names(params), g_leaves, ref_leaves, fd_leaves, kink_leaves, strict=True
    ):
        if jnp.shape(g) != jnp.shape(ref):
            raise ShapeError(
                f"`grads` entry {name!r} has shape {jnp.shape(g)}, expected the parameter's "
                f"shape {jnp.shape(ref)}"
            )
        d_auto = relative_difference(g, ref)
        d_fd = None
        if fd is not None:
            smooth_g.append(np.where(kink, 0.0, np.asarray(g, np.float64)))
            smooth_fd.append(np.where(kink, 0.0, np.asarray(fd, np.float64)))
            # None when every entry is at a kink: finite differences cannot judge this row
            d_fd = None if kink.all() else relative_difference(smooth_g[-1], smooth_fd[-1])
        ok = d_auto <= autodiff_tol and (d_fd is None or d_fd <= fd_tol)
        rows.append(ParamCheck(name, tuple(np.shape(g)), d_auto, d_fd, bool(ok), int(np.sum(kink))))
    if isinstance(params, Mapping):  # the params' own order (W1, b1, W2, …), not sorted keys
        order = {str(k): i for i, k in enumerate(params)}
        rows.sort(key=lambda row: order.get(row.name, len(order)))
    return GradCheckReport(
        rows=tuple(rows),
        autodiff=relative_difference(grads, reference),
        finite_difference=None if approx is None else relative_difference(smooth_g, smooth_fd),
        autodiff_tol=float(autodiff_tol),
        fd_tol=float(fd_tol),
    )
