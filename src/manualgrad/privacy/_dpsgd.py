r"""Differentially private training: DP-SGD with Poisson sampling and a privacy accountant.

DP-SGD (Abadi et al. 2016) with the practice the privacy analyses assume:

| piece                  | here                      | what it is                                |
|------------------------|---------------------------|-------------------------------------------|
| the sampler            | :func:`poisson_batch`     | each example in a batch independently,    |
|                        |                           | with probability q                        |
| fixed shapes under jit | :func:`batch_capacity`    | K columns + a mask; P[overflow] tiny      |
| the step               | :func:`masked_dp_grads`   | (1/(qN)) (Σ_{i ∈ 𝓑} clip_C(g_i) + σCξ)    |
| the accountant         | :func:`epsilon`,          | Google's `dp-accounting`, PLD or RDP      |
|                        | :func:`noise_multiplier`  |                                           |
| the training step      | `mg.training.private_step`| one loop for all training; ε reported by  |
|                        | and `Accountant`          | the accountant callback                   |

**The mechanism.** One step of DP-SGD releases

$$\tilde g = \frac{1}{qN}\Big(\sum_{i \in \mathcal B} \min\big(1, \tfrac{C}{\|g_i\|}\big)\, g_i
  + \sigma C\, \xi\Big), \qquad \xi \sim \mathcal N(0, I),$$

where the batch 𝓑 is drawn by Poisson sampling (each example independently with
probability q), g_i = ∂L_i/∂params, C is the clipping norm and σ the noise multiplier.
The clipped sum changes by at most C when one example is added or removed, so each
step is the Poisson-subsampled Gaussian mechanism with noise multiplier σ, and T steps
are the event

    SelfComposedDpEvent(PoissonSampledDpEvent(q, GaussianDpEvent(σ)), T)

under the **add/remove-one** neighbouring relation (data sets differing by the
presence of one example). :func:`epsilon` asks `dp_accounting` for the ε of that
event at δ; :func:`noise_multiplier` inverts it with `dp_accounting`'s
`calibrate_dp_mechanism`. The normaliser is the *expected* batch size q·N, which is
public, never the realised one (which depends on the data).

**Fixed shapes.** A batch is K columns of X gathered by index, with a boolean mask
marking the sampled examples; the remaining columns are filler whose weight in
formula (2) is exactly 0 (and whose dZ and A[l-1] columns are replaced by exact zeros
with `jnp.where` whenever any column holds a non-finite value, so that even a NaN there
cannot reach the sum). K is chosen so that a batch overflows (more than K examples
sampled) with a probability that is negligible against δ; should it happen, the
first K sampled examples are kept (:func:`poisson_batch`; what happens then does
not matter to the bound), and the guarantee of the run degrades to
(ε, δ + (1 + e^ε) p) where p is the probability that any batch of the run
overflowed — :func:`plan` chooses K so that this extra term is at most
δ/1000 and reports it.

**Smaller shapes for most batches.** A batch holds about q·N ± √(q(1−q)N) examples,
and K sits many standard deviations above q·N, so most of the K columns of most steps
are filler that costs a full column of compute. The training step is therefore
compiled for a few capacities K_1 < … < K_b = K (:func:`batch_capacities`: by default
the 0.9 and 0.999 quantiles of the batch size, and K) and each step runs the smallest
that holds its batch (:func:`in_smallest_capacity`, a `lax.switch`). A batch's
examples are the first entries of its sorted index, so the smaller shape drops filler
only: the same examples, the same clipped sum, the same noise, the same guarantee
(what the step time reveals about the batch size is outside the model, as for every
implementation with data-dependent batch shapes, Opacus' among them).

**Non-finite gradients.** An example whose gradient norm is not finite in the working
dtype (a NaN or Inf anywhere in its g_i) is dropped from the sum: it contributes
zero, exactly like a column outside the batch. This depends on that example alone,
so the sensitivity stays C, and a NaN never reaches the params (which would reveal
that such an example was sampled). Nothing reports how many were dropped: that count
is itself a function of the private batch.

The accountant is Google's `dp-accounting` package, an optional dependency:
``pip install "manualgrad[dp]"``. It is imported when first needed.

>>> import manualgrad as mg
>>> eps = mg.privacy.epsilon(noise_multiplier=2.0, sampling_rate=0.1, steps=100, delta=1e-5)
>>> round(eps, 2)
2.34
"""

from __future__ import annotations

import dataclasses
import functools
import math
import numbers
from collections.abc import Callable, Sequence
from typing import TYPE_CHECKING, Any, NamedTuple

import jax
import jax.numpy as jnp
from jax import lax

from manualgrad import per_example
from manualgrad._core import engine, threefry
from manualgrad._core.engine import check
from manualgrad._core.layer import Product
from manualgrad._errors import ConfigError

if TYPE_CHECKING:
    from manualgrad._network import Network

Array = jax.Array
Params = dict[str, Array]

__all__ = [
    "ACCOUNTANTS",
    "RNG_IMPLS",
    "DPConfig",
    "DPPlan",
    "PoissonBatch",
    "add_noise",
    "batch_capacity",
    "check_delta_for_dataset",
    "dpsgd_event",
    "epsilon",
    "examples_first",
    "gather_batch",
    "key_for_noise",
    "masked_dp_grads",
    "masked_dp_value_and_grad",
    "masked_products",
    "noise_multiplier",
    "overflow_probability",
    "plan",
    "poisson_batch",
]

#: The accountants :func:`epsilon` offers: `dp_accounting`'s privacy-loss-distribution
#: accountant (tight; the default) and its Rényi-DP accountant (looser, faster).
ACCOUNTANTS = ("pld", "rdp")

#: The share of δ that the capacity of a batch may cost (see :func:`plan`).
OVERFLOW_SHARE_OF_DELTA = 1e-3

_INSTALL = 'pip install "manualgrad[dp]"'


# --------------------------------------------------------------------------------------
# Checks of the privacy parameters: one clear error each
# --------------------------------------------------------------------------------------


def _real(name: str, x: Any, example: str) -> float:
    if isinstance(x, bool) or not isinstance(x, numbers.Real):
        raise ConfigError(f"expected `{name}` to be a real number, got {x!r}: e.g. {example}")
    return float(x)


class _Range(NamedTuple):
    """A privacy parameter's range, 0 < value < `high` (≤ `high` if `closed`), and its message.

    Outside the range the message names the parameter and its `symbol`, states the
    range and the value that arrived, says what the parameter is (`meaning`) and
    gives a good value (`example`, then the remark `after`).
    """

    symbol: str
    high: float
    closed: bool
    example: str
    meaning: str
    after: str = ""


# fmt: off
_RANGES = {
    "noise_multiplier": _Range("σ", math.inf, False, "1.0",
        "the noise std on the clipped sum is σ·C, and σ = 0 releases it exactly (ε = ∞)",
        after=", or give a target ε instead"),
    "sampling_rate": _Range("q", 1.0, True, "0.01",
        "it is the probability that each example is in a batch (expected batch size q·N)"),
    "delta": _Range("δ", 1.0, False, "1e-5",
        "it is the probability with which the ε guarantee may fail",
        after=", much smaller than 1/N"),
    "target_epsilon": _Range("", math.inf, False, "3.0",
        "ε = 0 would need infinite noise", after=" (budgets of 1 to 8 are common)"),
}
# fmt: on


def _in_range(name: str, x: Any) -> float:
    """`x` as a float, if it is a real number in the range of the privacy parameter `name`."""
    r = _RANGES[name]
    value = _real(name, x, f"{name}={r.example}")
    if 0 < value < r.high or (r.closed and value == r.high):
        return value
    symbol = f" ({r.symbol})" if r.symbol else ""
    bounds = (
        f"in (0, {r.high:g}{']' if r.closed else ')'}" if r.high < math.inf else "finite and > 0"
    )
    raise ConfigError(
        f"`{name}`{symbol} must be {bounds}, got {x}: {r.meaning} — "
        f"e.g. {name}={r.example}{r.after}"
    )


def _check_steps(steps: Any, name: str = "steps") -> int:
    if isinstance(steps, bool) or not isinstance(steps, numbers.Integral) or steps < 0:
        raise ConfigError(f"`{name}` must be an int ≥ 0, got {steps!r}")
    return int(steps)


def _check_accountant(accountant: Any) -> str:
    if accountant not in ACCOUNTANTS:
        raise ConfigError(
            f"unknown accountant {accountant!r}; expected one of {list(ACCOUNTANTS)}: 'pld' "
            "(privacy loss distributions, tight) or 'rdp' (Rényi DP, looser)"
        )
    return accountant


def check_delta_for_dataset(delta: float, n: int) -> None:
    """Refuse δ ≥ 1/N: at that δ, publishing one random example in full is already allowed."""
    if delta >= 1 / n:
        raise ConfigError(
            f"`delta` = {delta:g} is ≥ 1/N = {1 / n:.3g} for N = {n} training examples: a "
            "mechanism that publishes one randomly chosen example verbatim satisfies "
            f"(0, 1/N)-DP, so this δ promises nothing — use δ ≪ 1/N, e.g. delta={_small_delta(n):g}"
        )


def _small_delta(n: int) -> float:
    """A δ below 1/(10 N), rounded down to a power of ten."""
    return 10.0 ** math.floor(math.log10(1 / (10 * n)))


# --------------------------------------------------------------------------------------
# The accountant: dp_accounting, imported lazily
# --------------------------------------------------------------------------------------


def _dp_accounting():
    """The `dp_accounting` module, or a ConfigError that names the extra to install."""
    try:
        import dp_accounting
    except ImportError:
        raise ConfigError(
            "the privacy accountant needs Google's `dp-accounting` package, which is not "
            f"installed: {_INSTALL} (or pip install dp-accounting)"
        ) from None
    return dp_accounting


def _make_accountant(accountant: str) -> Callable[[], Any]:
    dp = _dp_accounting()
    relation = dp.NeighboringRelation.ADD_OR_REMOVE_ONE
    if accountant == "pld":
        return functools.partial(dp.pld.PLDAccountant, neighboring_relation=relation)
    return functools.partial(dp.rdp.RdpAccountant, neighboring_relation=relation)


def dpsgd_event(*, noise_multiplier: float, sampling_rate: float, steps: int) -> Any:
    """The `dp_accounting` event of T steps of DP-SGD with Poisson sampling.

    `SelfComposedDpEvent(PoissonSampledDpEvent(q, GaussianDpEvent(σ)), T)`: T times,
    sample each example with probability q and release the clipped sum (sensitivity
    C, add/remove-one) plus N(0, σ²C²) noise. Needs `dp-accounting`; T ≥ 1.
    """
    dp = _dp_accounting()
    step = dp.PoissonSampledDpEvent(sampling_rate, dp.GaussianDpEvent(noise_multiplier))
    return dp.SelfComposedDpEvent(step, steps)


def epsilon(
    *,
    noise_multiplier: float,
    sampling_rate: float,
    steps: int,
    delta: float,
    accountant: str = "pld",
) -> float:
    r"""ε of T steps of DP-SGD at δ: the privacy spent, from `dp_accounting`.

    | symbol | argument           |
    |--------|--------------------|
    | σ      | `noise_multiplier` (> 0): noise std / clipping norm C |
    | q      | `sampling_rate` in (0, 1]: P[an example is in a batch] |
    | T      | `steps` (≥ 0; T = 0 spends nothing: ε = 0) |
    | δ      | `delta` in (0, 1) |

    The event is `SelfComposedDpEvent(PoissonSampledDpEvent(q, GaussianDpEvent(σ)), T)`
    (:func:`dpsgd_event`): Poisson sampling — each example in each batch independently
    with probability q — and the Gaussian mechanism on the clipped sum, whose
    sensitivity is C under the add/remove-one neighbouring relation. `accountant`
    "pld" is `dp_accounting.pld.PLDAccountant` (privacy loss distributions, a tight
    upper bound; its default discretisation), "rdp" is `dp_accounting.rdp.RdpAccountant`
    (Rényi DP at its default orders: a looser upper bound, faster). The result is the
    smallest ε the accountant certifies for (ε, δ)-DP.

    >>> eps = epsilon(noise_multiplier=2.0, sampling_rate=0.1, steps=100, delta=1e-5)
    >>> rdp = epsilon(
    ...     noise_multiplier=2.0, sampling_rate=0.1, steps=100, delta=1e-5, accountant="rdp"
    ... )
    >>> round(eps, 3), round(rdp, 3)
    (2.337, 2.581)
    """
    sigma = _in_range("noise_multiplier", noise_multiplier)
    q = _in_range("sampling_rate", sampling_rate)
    T = _check_steps(steps)
    d = _in_range("delta", delta)
    make = _make_accountant(_check_accountant(accountant))
    if T == 0:
        return 0.0
    event = dpsgd_event(noise_multiplier=sigma, sampling_rate=q, steps=T)
    return float(make().compose(event).get_epsilon(d))


def noise_multiplier(
    *,
    target_epsilon: float,
    delta: float,
    sampling_rate: float,
    steps: int,
    accountant: str = "pld",
    tol: float = 1e-3,
) -> float:
    r"""The smallest σ (within `tol`) whose T steps of DP-SGD spend at most the target ε at δ.

    Inverts :func:`epsilon` for the same event,
    `SelfComposedDpEvent(PoissonSampledDpEvent(q, GaussianDpEvent(σ)), T)` (Poisson
    sampling, add/remove-one), with `dp_accounting.calibrate_dp_mechanism` (Brent's
    method): the result σ̂ satisfies epsilon(σ̂, …) ≤ `target_epsilon` with the same
    `accountant`, and is within `tol` (absolute, in units of σ) of the exact σ* at
    which the accountant's ε equals the target. Needs T ≥ 1.

    >>> sigma = noise_multiplier(target_epsilon=2.0, delta=1e-5, sampling_rate=0.1, steps=100)
    >>> eps = epsilon(noise_multiplier=sigma, sampling_rate=0.1, steps=100, delta=1e-5)
    >>> round(sigma, 2), eps <= 2.0
    (2.25, True)
    """
    eps = _in_range("target_epsilon", target_epsilon)
    d = _in_range("delta", delta)
    q = _in_range("sampling_rate", sampling_rate)
    T = _check_steps(steps)
    make = _make_accountant(_check_accountant(accountant))
    if T == 0:
        raise ConfigError("`steps` must be ≥ 1 to calibrate σ: zero steps spend no privacy")
    if not 0 < tol < math.inf:
        raise ConfigError(f"`tol` must be finite and > 0, got {tol}")
    dp = _dp_accounting()
    return float(
        dp.calibrate_dp_mechanism(
            make,
            lambda s: dpsgd_event(noise_multiplier=s, sampling_rate=q, steps=T),
            eps,
            d,
            tol=tol,
        )
    )


def _steps_within(
    *, budget: float, noise_multiplier: float, sampling_rate: float, delta: float, accountant: str
) -> int:
    """The largest T whose ε is at most `budget` (0 if even one step exceeds it)."""
    make = _make_accountant(accountant)
    one = make().compose(
        dpsgd_event(noise_multiplier=noise_multiplier, sampling_rate=sampling_rate, steps=1)
    )
    if one.get_epsilon(delta) > budget:
        return 0
    dp = _dp_accounting()
    return int(
        dp.calibrate_dp_mechanism(
            make,
            lambda T: dpsgd_event(
                noise_multiplier=noise_multiplier, sampling_rate=sampling_rate, steps=max(int(T), 1)
            ),
            budget,
            delta,
            bracket_interval=dp.LowerEndpointAndGuess(1, 100),
            discrete=True,
        )
    )


# --------------------------------------------------------------------------------------
# Poisson sampling with fixed shapes
# --------------------------------------------------------------------------------------


class PoissonBatch(NamedTuple):
    """One Poisson-sampled batch as fixed-shape arrays.

    index: (K,) int, columns of X (each sampled example once, in increasing order);
    mask: (K,) bool, True for the columns that are in the batch. The unmasked columns
    are filler (any valid column) and contribute exactly zero. `mask.sum()` ~
    Binomial(N, q), capped at K.
    """

    index: Array
    mask: Array


def poisson_batch(key: Array, n: int, sampling_rate: float | Array, capacity: int) -> PoissonBatch:
    r"""Poisson sampling under jit in O(K): every example independently with probability q.

    Shapes: `n` examples -> K = `capacity` columns, sorted. Walking through the examples
    0, 1, …, n − 1 and including each with probability q, the gaps between successive
    included examples (and from −1 to the first) are i.i.d. geometric,

        P[G = g] = (1 − q)^{g−1} q,   g = 1, 2, …,

    so the included examples are the positions j_k = G_1 + … + G_k − 1 that are < n
    (Bernoulli process ⇔ geometric gaps). K gaps are drawn by inversion,
    G = 1 + ⌊log V / log(1 − q)⌋ with V uniform on (0, 1], and their running sums are
    the batch; the mask keeps the positions < n. Cost: K uniforms and K logs, against
    the n uniforms and the top-K over n that thresholding u_i < q for every example
    needs. If more than K examples are sampled (an overflow, probability
    :func:`overflow_probability`, charged to δ by :func:`plan`), the batch holds the
    first K of them in index order. The unmasked slots hold filler index n − 1 (any
    valid column: the step gives them weight exactly 0). `n`, `capacity` are static;
    `key` and `sampling_rate` may be traced.
    """
    if not 1 <= capacity <= n:
        raise ConfigError(f"`capacity` must be in [1, n = {n}], got {capacity}")
    if n >= 2**30:
        raise ConfigError(f"`n` must be < 2**30 (int32 positions), got {n}")
    q = jnp.asarray(sampling_rate)
    dtype = q.dtype if jnp.issubdtype(q.dtype, jnp.floating) else jnp.result_type(float)
    q = q.astype(dtype)
    v = 1 - threefry.uniform(key, (capacity,), dtype)  # V in (0, 1]; = jax.random.uniform
    # G − 1 = ⌊log V / log(1 − q)⌋ ~ Geometric(q) − 1; capped at n (any gap ≥ n ends the
    # batch), and q = 1 gives log(1 − q) = −∞, G = 1: every example.
    extra = jnp.floor(jnp.log(v) / jnp.log1p(-q))
    gaps = 1 + jnp.minimum(jnp.nan_to_num(extra, nan=0.0), n).astype(jnp.int32)
    # j_k = G_1 + … + G_k − 1. Each gap is ≤ n + 1, so when K (n + 1) < 2³¹ (static) a
    # plain int32 cumsum cannot overflow: one kernel. Otherwise the sums saturate at
    # n + 1 (position n: past the end), a log K-level scan of small kernels.
    if capacity * (n + 1) < 2**31:
        position = jnp.cumsum(gaps) - 1
    else:
        position = lax.associative_scan(lambda a, b: jnp.minimum(a + b, n + 1), gaps) - 1
    mask = position < n
    return PoissonBatch(index=jnp.where(mask, position, n - 1), mask=mask)


def examples_first(X: Array, Y: Array) -> tuple[Array, Array]:
    """The training set as the private loop holds it: the examples' axis first.

    Shapes: X (…, N), Y (n_y, N) -> (N, …), (N, n_y). One transpose per training run
    (`moveaxis`, not a view: XLA materialises it), so that each step's
    :func:`gather_batch` of K sampled examples reads K contiguous rows. Gathering K
    columns of the (n_x, N) layout instead touches K scattered entries of every one of
    its n_x rows: at n_x = 784, N = 60000 and K = 376 that gather and the first layer's
    product took 2.4 ms against 1.3 ms from this layout (quiet 2-core CPU, bench/RESULTS.md).
    """
    return jnp.moveaxis(X, -1, 0), jnp.moveaxis(Y, -1, 0)


def gather_batch(X_held: Array, Y_held: Array, index: Array) -> tuple[Array, Array]:
    """Examples `index` of a training set held by :func:`examples_first`, examples last again.

    Shapes: (N, …), (N, n_y), index (K,) -> X (…, K), Y (n_y, K): the batch in the
    library's convention, the K columns `X[..., index]`, `Y[..., index]` of the set.
    """
    return jnp.moveaxis(X_held[index], 0, -1), jnp.moveaxis(Y_held[index], 0, -1)


def overflow_probability(n: int, sampling_rate: float, capacity: int) -> float:
    """P[Binomial(n, q) > K]: the probability that a Poisson batch of n examples overflows K."""
    from scipy.stats import binom

    return float(binom.sf(capacity, n, sampling_rate))


def batch_capacity(n: int, sampling_rate: float, *, overflow: float) -> int:
    """The smallest K with P[Binomial(n, q) > K] ≤ `overflow` (the exact binomial tail).

    E.g. n = 1437, q = 0.045 (expected batch 65): K = 127 for overflow 1e-12. Found by
    bisection on K with `scipy.stats.binom.sf`; at most n.
    """
    q = _in_range("sampling_rate", sampling_rate)
    if not 0 <= overflow < 1:
        raise ConfigError(f"`overflow` must be in [0, 1), got {overflow}")
    lo, hi = 0, n  # P[Bin > n] = 0 ≤ overflow
    while lo < hi:
        mid = (lo + hi) // 2
        if overflow_probability(n, q, mid) <= overflow:
            hi = mid
        else:
            lo = mid + 1
    return max(lo, 1)


#: The batch-size quantiles at which the private step is compiled besides K (:class:`DPConfig`).
BATCH_QUANTILES = (0.9, 0.999)


def batch_capacities(n: int, sampling_rate: float, capacity: int, quantiles=BATCH_QUANTILES):
    """K_1 < … < K_b = `capacity`: the shapes the private step is compiled for.

    K_j = the `quantiles[j]` quantile of the batch size Binomial(n, q) (the smallest k
    with P[Binomial ≤ k] ≥ p), kept when it is below `capacity`, then `capacity`
    itself. E.g. n = 60000, q·n = 256: (277, 307, 376), and the expected shape of a
    step is 280 columns instead of 376. `quantiles` = () gives (capacity,).
    """
    from scipy.stats import binom

    q = _in_range("sampling_rate", sampling_rate)
    if not isinstance(quantiles, tuple | list):
        raise ConfigError(
            f"`batch_quantiles` must be a tuple of numbers in (0, 1), got {quantiles!r}: "
            "e.g. (0.9, 0.999), or () for the capacity K alone"
        )
    shapes = {capacity}
    for p in quantiles:
        if isinstance(p, bool) or not isinstance(p, numbers.Real) or not 0 < float(p) < 1:
            raise ConfigError(
                f"each batch-size quantile must be a number in (0, 1), got {p!r}: "
                "e.g. batch_quantiles=(0.9, 0.999), or () for the capacity K alone"
            )
        k = int(binom.ppf(float(p), n, q))
        if 1 <= k < capacity:
            shapes.add(k)
    return tuple(sorted(shapes))


def in_smallest_capacity(
    capacities: Sequence[int], batch: PoissonBatch, fn: Callable[[Array, Array], Any]
) -> Any:
    """`fn(index[:K_j], mask[:K_j])` for the smallest K_j in `capacities` that holds the batch.

    The sampled examples are the first |𝓑| entries of `batch.index` (sorted positions,
    the filler after them), so every K_j ≥ |𝓑| sees the whole batch. One
    `lax.switch` over the shapes (each branch compiled once); `capacities`: sorted,
    the last one the batch's K (:func:`batch_capacities`). `fn` must return the same
    structure for every shape.
    """
    capacities = tuple(capacities)
    if not capacities or capacities[-1] != batch.index.shape[0]:
        raise ConfigError(
            f"`capacities` must end with the batch's capacity K = {batch.index.shape[0]}, "
            f"got {capacities}"
        )
    if len(capacities) == 1:
        return fn(batch.index, batch.mask)
    which = jnp.searchsorted(jnp.asarray(capacities), jnp.sum(batch.mask))  # K_j ≥ |𝓑|
    branches = [
        functools.partial(lambda k, _: fn(batch.index[:k], batch.mask[:k]), k) for k in capacities
    ]
    return lax.switch(which, branches, None)


# --------------------------------------------------------------------------------------
# The private step: the engine's products, clipped, masked, formula (2) with q·N, noise
# --------------------------------------------------------------------------------------


def masked_products(products: Sequence[Product], keep: Array) -> tuple[Product, ...]:
    """The products of Σ_{i kept} L_i: every A and dZ with exact zeros in the dropped columns.

    `jnp.where`, not a product, so that a NaN or Inf in a dropped column cannot leak
    (0 · NaN = NaN); A's dropped columns are zeroed too, since formula (2) multiplies
    dZ by Aᵀ. Shapes: keep (m,); every A (d_in, T, m), dZ (d_out, T, m). The clip factors
    then enter formula (2) as its per-example weights (:func:`_masked_clipped_sum`).
    """
    kept = keep[None, None, :]
    return tuple(
        p._replace(A=jnp.where(kept, p.A, 0), dZ=jnp.where(kept, p.dZ, 0)) for p in products
    )


def _masked_clipped_sum(
    params: Params, products: Sequence[Product], keep: Array, s: Array, **kw: Any
) -> Params:
    """Formula (2) on the kept columns, weighted by the clip factors: (1/B) Σ_{i kept} s_i g_i.

    The dropped columns are zeroed with `jnp.where` (:func:`masked_products`) and s_i
    scales column i inside (2), after the reshape. Measured against the alternative of
    putting the mask into (2)'s weights too, with a `lax.cond` that zeroes only when some
    column is non-finite (0 · NaN): on the quiet 2-core CPU (`bench/privacy.py
    --no-opacus`, 2026-12-06) the `where` form ran 1.33 [1.30, 1.37] × step@K at
    784-512-512-10 against 1.70 [1.65, 1.90] × with the cond (whose operands are every A
    and dZ), and 1.60 against 1.77 × at 784-256-256-10.
    """
    return engine.grads_from_products(params, masked_products(products, keep), weights=s, **kw)


#: The `jax.random` implementations the noise may be drawn with (:class:`DPConfig`'s `rng`).
RNG_IMPLS = ("threefry2x32", "rbg", "unsafe_rbg")


def _check_rng(rng: Any) -> str:
    if rng not in RNG_IMPLS:
        raise ConfigError(
            f"unknown noise generator `rng` = {rng!r}; expected one of {list(RNG_IMPLS)}: "
            "'threefry2x32' (jax's default, the same numbers on every backend) or 'rbg' / "
            "'unsafe_rbg' (XLA's RngBitGenerator; see DPConfig)"
        )
    return rng


def key_for_noise(key: Array, rng: str = "threefry2x32") -> Array:
    """A key of implementation `rng` for the noise, derived from `key` (any implementation).

    threefry2x32 with a threefry key: `key` itself. Otherwise the new key's data are
    `jax.random.bits` of `key` (4 words for rbg and unsafe_rbg), so a run is still a
    function of its one key.
    """
    _check_rng(rng)
    if str(jax.random.key_impl(key)) == rng:
        return key
    shape = jax.eval_shape(lambda: jax.random.key_data(jax.random.key(0, impl=rng))).shape
    data = jax.random.bits(key, shape, jnp.uint32)
    return jax.random.wrap_key_data(data, impl=rng)


def add_noise(
    grads: Params,
    key: Array,
    clip_norm: float | Array,
    noise_multiplier: float | Array,
    normaliser: float | Array,
) -> Params:
    r"""grads + σ C ξ / B with ξ ~ N(0, I_P): one flat draw of all P normals, cut into the arrays.

    `grads` is (1/B) Σ_i s_i g_i; P = the total number of parameters. The P normals are
    drawn at once with `key` (`jax.random.normal`, whatever implementation `key` has)
    and handed out in the sorted order of the names, so a given key gives the same
    noise whatever the dict's order. One draw instead of one per array: one key, one
    kernel. With a threefry key the draw uses both 32-bit words of every Threefry
    block (`jax.threefry_partitionable(False)`, jax's original scheme) instead of
    XOR-ing them into one word (the partitionable default): half the Threefry blocks
    for the same P normals, the same generator; what it gives up is splitting one draw
    across devices, which the replicated noise of a data-parallel step never does.
    The draw is rounded up to a multiple of 1024 normals (the rest unused): on CPU,
    that scheme ran 3–5× slower at P = 269 322 (an odd number of blocks) than at
    P = 270 336. With a threefry key the numbers are drawn by
    :func:`manualgrad._core.threefry.normal`: jax.random.normal's own numbers, bit for
    bit, with the 20 Threefry rounds unrolled, which XLA fuses into one kernel where
    jax's CPU lowering runs a loop (2× faster at P = 270 336 on CPU). Returns the
    params' keys in `grads`' order.
    """
    names = sorted(grads)
    dtype = grads[names[0]].dtype
    sizes = [grads[k].size for k in names]
    P = sum(sizes)
    # jax.random.normal's numbers under threefry_partitionable(False), its hash unrolled
    # (manualgrad._core.threefry); P rounded up to a multiple of 1024: see the docstring
    xi = threefry.normal(key, (-(-P // 1024) * 1024,), dtype, partitionable=False)
    std = jnp.asarray(noise_multiplier, dtype) * jnp.asarray(clip_norm, dtype)  # σC on the sum
    noisy, start = {}, 0
    for name, size in zip(names, sizes, strict=True):
        piece = xi[start : start + size].reshape(grads[name].shape)
        noisy[name] = grads[name] + std * piece / normaliser  # (Σ_i s_i g_i + σCξ)/B
        start += size
    return {k: noisy[k] for k in grads}


def masked_dp_value_and_grad(
    net: Network,
    params: Any,
    X: Any,
    Y: Any,
    mask: Any,
    noise_key: Array,
    clip_norm: float | Array,
    noise_multiplier: float | Array,
    normaliser: float | Array,
    key: Array | None = None,
) -> tuple[Array, Params]:
    """(mean loss of the kept columns, :func:`masked_dp_grads`), from one backward pass.

    The loss is computed from the private batch: it is *not* covered by the guarantee
    (for monitoring only).
    """
    check.check_clip_norm(clip_norm)
    check.check_noise_multiplier(noise_multiplier)
    check.check_key(noise_key)
    params, X, Y, m = net.checked(params, X, Y, key)
    mask = jnp.asarray(mask)
    if mask.shape != (m,) or mask.dtype != jnp.bool_:
        raise ConfigError(
            f"expected `mask` to be a bool array of shape (m,) = ({m},), one entry per column "
            f"of X, got dtype {mask.dtype} and shape {mask.shape}"
        )
    spec = net.spec
    p = engine.backward_pass(params, X, Y, spec, engine.dropout_masks(params, X, spec, key))
    sq = per_example.squared_norms(p.products)
    finite = jnp.isfinite(sq)
    keep = mask & finite  # non-finite g_i: dropped
    s = per_example.clip_factors(jnp.where(keep, sq, 0), clip_norm)
    grads = _masked_clipped_sum(  # (2): (1/(qN)) Σ_{i kept} s_i g_i
        params, p.products, keep, s, m=normaliser, precision=net.precision
    )
    grads = add_noise(grads, noise_key, clip_norm, noise_multiplier, normaliser)
    grads = engine.add_l2_grads(grads, params, net.l2, normaliser)
    losses = jnp.where(keep, engine.example_losses(p.caches, Y, spec), 0)
    count = jnp.maximum(jnp.sum(keep), 1).astype(losses.dtype)
    return jnp.sum(losses) / count, grads


def masked_dp_grads(
    net: Network,
    params: Any,
    X: Any,
    Y: Any,
    mask: Any,
    noise_key: Array,
    clip_norm: float | Array,
    noise_multiplier: float | Array,
    normaliser: float | Array,
    key: Array | None = None,
) -> Params:
    r"""The DP-SGD gradient of the masked columns: (1/B)(Σ_{i: mask_i} clip_C(g_i) + σ C ξ).

    | symbol | argument |
    |--------|----------|
    | 𝓑      | the columns i with `mask[i]` True (X: (…, K), Y: (n_L, K), mask: (K,) bool) |
    | C      | `clip_norm` |
    | σ      | `noise_multiplier` |
    | B      | `normaliser`: q·N for Poisson sampling (the expected batch size) |
    | ξ      | N(0, I_P) from `noise_key`, one flat draw (:func:`add_noise`)            |

        g̃ = (1/B) (Σ_{i ∈ 𝓑} min(1, C/‖g_i‖) g_i + σ C ξ)   [+ (λ/B) W[l]]

    One backward pass on all K columns (the engine's), the clip factors s_i from the
    norm identity, then the columns outside the batch — and any example whose ‖g_i‖
    is not finite — replaced by exact zeros in every product's dZ and A before formula
    (2), so they change nothing, NaN included. With every mask entry True, σ = 0 and
    B = K this is :func:`manualgrad.per_example.clipped_grads`; an all-False mask (an
    empty batch) gives the noise alone. `key`: the dropout key (keep_prob < 1).
    """
    return masked_dp_value_and_grad(
        net, params, X, Y, mask, noise_key, clip_norm, noise_multiplier, normaliser, key
    )[1]


# --------------------------------------------------------------------------------------
# The configuration and its resolved plan
# --------------------------------------------------------------------------------------


@dataclasses.dataclass(frozen=True, kw_only=True)
class DPConfig:
    """The privacy settings of a run: give `noise_multiplier`, `target_epsilon`, or both.

    | field              | meaning                                                      |
    |--------------------|--------------------------------------------------------------|
    | `sampling_rate`    | q: each example is in each batch with probability q         |
    | `clip_norm`        | C: every example's gradient is clipped to norm ≤ C          |
    | `delta`            | δ of the (ε, δ) guarantee; must be < 1/N                    |
    | `noise_multiplier` | σ: noise std σC on the clipped sum (None: calibrate it)     |
    | `target_epsilon`   | the ε budget: σ is calibrated to it when `noise_multiplier` |
    |                    | is None; with both, training refuses to exceed it           |
    | `accountant`       | "pld" (default) or "rdp", see :func:`epsilon`               |
    | `rng`              | the `jax.random` implementation of the noise, see below     |
    | `batch_quantiles`  | the batch-size quantiles at which the step is compiled      |
    |                    | besides K (:func:`batch_capacities`); () for K alone        |

    **The noise generator** (`rng`). The guarantee needs ξ ~ N(0, I) independent of
    the data; which pseudo-random generator draws it is a choice of speed against
    reproducibility, not of ε:

    | `rng`                    | what it is, and what it gives up                           |
    |--------------------------|------------------------------------------------------------|
    | "threefry2x32" (default) | jax's default: counter-based (Threefry, 20 rounds); the    |
    |                          | same bits on every backend and jax version; slowest        |
    | "rbg"                    | XLA's `RngBitGenerator` (Philox on CPU and GPU), seeded by |
    |                          | 4 words drawn from the step's key: faster; its bits may    |
    |                          | change across backends, XLA versions and shardings, so a   |
    |                          | run is reproducible only on the same setup                 |
    | "unsafe_rbg"             | the same generator; jax splits its keys less carefully,    |
    |                          | which never matters here (each step's key is drawn once)   |

    All three pass the standard statistical batteries (Threefry and Philox: Salmon et
    al. 2011, BigCrush); none is a cryptographic generator, as in every DP-SGD library
    (Opacus' default, too, is not; its `secure_mode` uses a CSPRNG). The accountant's ε
    assumes exact Gaussian noise whatever `rng` is.
    """

    sampling_rate: float
    clip_norm: float = 1.0
    delta: float = 1e-5
    noise_multiplier: float | None = None
    target_epsilon: float | None = None
    accountant: str = "pld"
    rng: str = "threefry2x32"
    batch_quantiles: tuple[float, ...] = BATCH_QUANTILES


class DPPlan(NamedTuple):
    """A run's privacy settings resolved for N examples and T steps (see :func:`plan`).

    noise_multiplier: σ (given or calibrated); epsilon: ε after all T steps at delta;
    capacity: K columns per batch; overflow: the probability that any batch of the
    run overflows (≤ OVERFLOW_SHARE_OF_DELTA · δ / (1 + e^ε)); delta_overflow: the
    (1 + e^ε) · overflow that truncation may add to δ; rng: the noise generator
    (:class:`DPConfig`); capacities: the shapes K_1 < … < K the step is compiled for
    (:func:`batch_capacities`; () means K alone); normaliser: q·N.
    """

    n: int
    steps: int
    sampling_rate: float
    clip_norm: float
    delta: float
    noise_multiplier: float
    epsilon: float
    accountant: str
    capacity: int
    overflow: float
    delta_overflow: float
    rng: str = "threefry2x32"
    capacities: tuple[int, ...] = ()

    @property
    def normaliser(self) -> float:
        return self.sampling_rate * self.n

    @property
    def batch_shapes(self) -> tuple[int, ...]:
        """The capacities the step is compiled for, the last one K."""
        return self.capacities or (self.capacity,)


def plan(dp: DPConfig, *, n: int, steps: int) -> DPPlan:
    """Check `dp` against N = `n` examples and T = `steps`, calibrate σ, choose K.

    * σ: `dp.noise_multiplier`, or :func:`noise_multiplier` for `dp.target_epsilon`;
    * ε: :func:`epsilon` after T steps; with both σ and a target given, ε above the
      target is refused (the error says how many steps fit);
    * K: the smallest capacity with T · P[Binomial(N + 1, q) > K] · (1 + e^ε) ≤
      δ / 1000 (N + 1: the bound holds for a neighbour with one more example too);
    * the smaller shapes below K: :func:`batch_capacities` at `dp.batch_quantiles`.
    """
    if not isinstance(dp, DPConfig):
        raise ConfigError(f"`dp` must be a manualgrad.privacy.DPConfig, got {type(dp).__name__}")
    T = _check_steps(steps)
    q = _in_range("sampling_rate", dp.sampling_rate)
    delta = _in_range("delta", dp.delta)
    check_delta_for_dataset(delta, n)
    clip = check.check_clip_norm(dp.clip_norm)
    assert clip is not None
    accountant = _check_accountant(dp.accountant)
    _check_rng(dp.rng)
    if dp.noise_multiplier is None and dp.target_epsilon is None:
        raise ConfigError(
            "DPConfig needs `noise_multiplier` (σ) or `target_epsilon` (to calibrate σ), got "
            "neither: e.g. DPConfig(sampling_rate=0.01, target_epsilon=3.0)"
        )
    budget = None if dp.target_epsilon is None else _in_range("target_epsilon", dp.target_epsilon)
    if dp.noise_multiplier is None:
        assert budget is not None
        if T == 0:
            raise ConfigError("`steps` must be ≥ 1 to calibrate σ to a target ε")
        sigma = noise_multiplier(
            target_epsilon=budget, delta=delta, sampling_rate=q, steps=T, accountant=accountant
        )
    else:
        sigma = _in_range("noise_multiplier", dp.noise_multiplier)
    eps = epsilon(
        noise_multiplier=sigma, sampling_rate=q, steps=T, delta=delta, accountant=accountant
    )
    if budget is not None and eps > budget:
        fit = _steps_within(
            budget=budget,
            noise_multiplier=sigma,
            sampling_rate=q,
            delta=delta,
            accountant=accountant,
        )
        raise ConfigError(
            f"the privacy budget ε = {budget:g} is exhausted before the requested {T} steps: "
            f"σ = {sigma:g}, q = {q:g} spend ε = {eps:.4g} at δ = {delta:g} after {T} steps; "
            f"at most {fit} steps (≈ {fit * q:.3g} epochs) fit — train fewer steps, raise "
            "`noise_multiplier`, lower `sampling_rate`, or drop `noise_multiplier` to "
            "calibrate it to the budget"
        )
    per_step = OVERFLOW_SHARE_OF_DELTA * delta / ((1 + _exp(eps)) * max(T, 1))
    capacity = min(batch_capacity(n + 1, q, overflow=per_step), n)
    overflow = 0.0 if capacity == n else min(1.0, T * overflow_probability(n + 1, q, capacity))
    return DPPlan(
        n=n,
        steps=T,
        sampling_rate=q,
        clip_norm=clip,
        delta=delta,
        noise_multiplier=sigma,
        epsilon=eps,
        accountant=accountant,
        capacity=capacity,
        overflow=overflow,
        delta_overflow=(1 + _exp(eps)) * overflow,
        rng=dp.rng,
        capacities=batch_capacities(n, q, capacity, dp.batch_quantiles),
    )


def _exp(x: float) -> float:
    return math.exp(min(x, 700.0))
