r"""What a user would write instead of manualgrad: the baselines every benchmark compares with.

Nothing here calls manualgrad. The network is the same dense network, params in
manualgrad's layout (W[l]: (n_l, n_{l-1}), b[l]: (n_l, 1), examples as columns), so
the gradients can be checked against manualgrad's before anything is timed.

| baseline | written as                                                                 |
|----------|----------------------------------------------------------------------------|
| (a) jax  | `jax.value_and_grad` of :func:`idiomatic_cost`: a loop of `W @ A + b` with    |
|          | `jax.nn` activations and an `optax.losses` loss on the logits               |
| (b) eqx  | an equinox module of `eqx.nn.Linear` layers, `jax.vmap` over examples,       |
|          | `eqx.filter_value_and_grad` (needs `pip install equinox`)                   |
| (c) torch| PyTorch autograd, eager, the same layers and loss (needs `pip install torch`) |

Precision policies (see :data:`manualgrad.benchmark.POLICIES`): `highest` contracts
with `precision="highest"`; `bf16` casts both operands of every product to bfloat16
and accumulates in float32 (`preferred_element_type`), as a user asking for bf16
matmuls writes it; equinox honours `highest` through `jax.default_matmul_precision`
and has no bf16 column, PyTorch runs bf16 under `torch.autocast`.
"""

from __future__ import annotations

import contextlib
import os
import sys
import time
from collections.abc import Callable, Iterator, Mapping, Sequence
from typing import Any, NamedTuple

import jax
import jax.numpy as jnp
import numpy as np
import optax

from manualgrad._errors import optional_import

Array = jax.Array
Params = Mapping[str, Array]

#: hidden/output activation name -> the `jax.nn` function a user would call
JAX_ACTIVATIONS: dict[str, Callable[[Array], Array]] = {
    "relu": jax.nn.relu,
    "leaky_relu": jax.nn.leaky_relu,
    "tanh": jnp.tanh,
    "sigmoid": jax.nn.sigmoid,
    "linear": lambda z: z,
}

#: loss name -> output activation under which the loss is taken on the logits
OUTPUT_ACTIVATION = {"bce": "sigmoid", "ce": "softmax", "mse": None}


class Step(NamedTuple):
    """A gradient step ready to time.

    `call()` runs one step (its result is passed to `jax.block_until_ready`);
    `result()` returns (C, grads) with grads a dict keyed and shaped like the params,
    for the agreement check. The last three fields are None where they do not apply.
    """

    call: Callable[[], Any]
    result: Callable[[], tuple[Any, dict[str, Any]]]
    compile_s: float | None
    temp_bytes: int | None
    flops_xla: float | None


def _product(precision: str) -> Callable[[Array, Array], Array]:
    if precision == "bf16":
        return lambda W, A: jnp.matmul(
            W.astype(jnp.bfloat16), A.astype(jnp.bfloat16), preferred_element_type=A.dtype
        )
    if precision == "highest":
        return lambda W, A: jnp.matmul(W, A, precision="highest")
    return jnp.matmul


def idiomatic_cost(
    params: Params,
    X: Array,
    Y: Array,
    *,
    activations: Sequence[str],
    loss: str = "bce",
    precision: str = "default",
) -> Array:
    """C = (1/m) Σ_i L(z[L](i), y(i)) written as a JAX user would, for `jax.value_and_grad`.

    Z[l] = W[l] A[l-1] + b[l], A[l] = g[l](Z[l]) with `jax.nn`; the loss is taken on
    the logits Z[L] with `optax.losses` (the output activation in `activations[-1]`
    is the one the loss implies: sigmoid for bce, softmax for ce; any for mse, where
    L = ½ ‖a − y‖²). X: (n_x, m), Y: (n_L, m). `activations` names one activation per
    layer, `precision` is a policy of :data:`POLICIES`' matmuls ("default", "highest",
    "bf16").
    """
    matmul = _product(precision)
    n_layers = len(params) // 2
    A = X
    for l in range(1, n_layers):
        A = JAX_ACTIVATIONS[activations[l - 1]](matmul(params[f"W{l}"], A) + params[f"b{l}"])
    Z = matmul(params[f"W{n_layers}"], A) + params[f"b{n_layers}"]
    if loss == "bce":
        return jnp.mean(jnp.sum(optax.losses.sigmoid_binary_cross_entropy(Z, Y), axis=0))
    if loss == "ce":
        return jnp.mean(optax.losses.softmax_cross_entropy(Z, Y, axis=0))
    if loss == "mse":
        A = JAX_ACTIVATIONS[activations[-1]](Z)
        return jnp.mean(0.5 * jnp.sum(optax.losses.squared_error(A, Y), axis=0))
    raise ValueError(f"unknown loss {loss!r}; expected one of {sorted(OUTPUT_ACTIVATION)}")


def jax_step(fn: Callable, params: Mapping[str, Array], X: Array, Y: Array) -> Step:
    """`fn(params, X, Y) -> (C, grads)` compiled ahead of time on these inputs."""
    from manualgrad.benchmark._measure import temp_bytes, xla_flops

    params = dict(params)
    t0 = time.perf_counter()
    compiled = jax.jit(fn).lower(params, X, Y).compile()
    compile_s = time.perf_counter() - t0
    return Step(
        call=lambda: compiled(params, X, Y),
        result=lambda: compiled(params, X, Y),
        compile_s=compile_s,
        temp_bytes=temp_bytes(compiled),
        flops_xla=xla_flops(compiled),
    )


def idiomatic_value_and_grad(
    activations: Sequence[str], loss: str = "bce", precision: str = "default"
) -> Callable:
    """Baseline (a): `jax.value_and_grad` of :func:`idiomatic_cost`, `(params, X, Y) -> (C, g)`."""
    acts = tuple(activations)

    def cost(params, X, Y):
        return idiomatic_cost(params, X, Y, activations=acts, loss=loss, precision=precision)

    return jax.value_and_grad(cost)


def equinox_step(
    params: Params,
    X: Array,
    Y: Array,
    *,
    activations: Sequence[str],
    loss: str = "bce",
    precision: str = "default",
) -> Step:
    """Baseline (b): an equinox MLP with an optax loss, examples as rows under `jax.vmap`.

    The network's options are :func:`idiomatic_cost`'s.
    Raises :class:`~manualgrad.errors.MissingDependencyError` (an ImportError) without
    equinox (`pip install "manualgrad[bench]"`) and ValueError for
    the bf16 policy (no idiomatic equinox equivalent).
    """
    eqx = optional_import(
        "equinox", needed_for="baseline (b)", install='pip install "manualgrad[bench]"'
    )
    from manualgrad.benchmark._measure import temp_bytes, xla_flops

    if precision == "bf16":
        raise ValueError("the equinox baseline has no bf16 policy")
    if loss != "bce":
        raise ValueError(f"the equinox baseline is written for bce, got {loss!r}")
    n_layers = len(params) // 2
    hidden = tuple(activations[:-1])

    class MLP(eqx.Module):
        layers: list
        acts: tuple = eqx.field(static=True)

        def __call__(self, x):  # one example, x: (n_x,)
            for layer, act in zip(self.layers[:-1], self.acts, strict=True):
                x = JAX_ACTIVATIONS[act](layer(x))
            return self.layers[-1](x)

    keys = jax.random.split(jax.random.key(0), n_layers)
    layers = []
    for l in range(1, n_layers + 1):
        W, b = params[f"W{l}"], params[f"b{l}"]
        layer = eqx.nn.Linear(W.shape[1], W.shape[0], key=keys[l - 1], dtype=W.dtype)
        layer = eqx.tree_at(lambda lin: (lin.weight, lin.bias), layer, (W, b[:, 0]))
        layers.append(layer)
    model = MLP(layers, hidden)
    x_rows, y_rows = X.T, Y.T

    def loss_fn(model, x, y):
        logits = jax.vmap(model)(x)
        return jnp.mean(jnp.sum(optax.losses.sigmoid_binary_cross_entropy(logits, y), axis=1))

    step = eqx.filter_jit(eqx.filter_value_and_grad(loss_fn))
    t0 = time.perf_counter()
    with jax.default_matmul_precision("highest" if precision == "highest" else None):
        compiled = step.lower(model, x_rows, y_rows).compile()
    compile_s = time.perf_counter() - t0

    def result():
        C, g = compiled(model, x_rows, y_rows)
        grads = {}
        for l, layer in enumerate(g.layers, start=1):
            grads[f"W{l}"] = layer.weight
            grads[f"b{l}"] = layer.bias[:, None]
        return C, {k: grads[k] for k in params}

    return Step(
        call=lambda: compiled(model, x_rows, y_rows),
        result=result,
        compile_s=compile_s,
        temp_bytes=temp_bytes(getattr(compiled, "compiled", compiled)),  # jax's Compiled
        flops_xla=xla_flops(getattr(compiled, "compiled", compiled)),
    )


def _import_torch() -> Any:
    """torch, imported with its OpenMP threads told to sleep when idle; the environment kept.

    PyTorch's OpenMP threads busy-wait after each op by default, taking the cores from
    whatever runs next (here: the jax step of the same round). `OMP_WAIT_POLICY=PASSIVE`
    makes them sleep; the OpenMP runtime reads it once, when torch loads it, so it is set
    for that import only and the process environment is restored afterwards (a value the
    user set is left alone; a torch imported earlier keeps its own setting).
    """
    if sys.modules.get("torch") is not None:  # already loaded: its OpenMP runtime too
        return sys.modules["torch"]
    before = os.environ.get("OMP_WAIT_POLICY")
    os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")
    try:
        return optional_import(
            "torch", needed_for="baseline (c)", install='pip install "manualgrad[bench]"'
        )
    finally:
        if before is None:
            os.environ.pop("OMP_WAIT_POLICY", None)


@contextlib.contextmanager
def _tf32(torch: Any, allowed: bool) -> Iterator[None]:
    """`torch.backends.cuda.matmul.allow_tf32 = allowed` inside the block, restored after it."""
    matmul = torch.backends.cuda.matmul
    before = matmul.allow_tf32
    matmul.allow_tf32 = allowed
    try:
        yield
    finally:
        matmul.allow_tf32 = before


def torch_step(
    params: Params,
    X: Array,
    Y: Array,
    *,
    activations: Sequence[str],
    loss: str = "bce",
    precision: str = "default",
) -> Step:
    """Baseline (c): PyTorch autograd (eager) on the same layers, data and loss.

    The network's options are :func:`idiomatic_cost`'s. Runs on CUDA when both torch and
    jax see a GPU, else on the CPU; on CUDA each step allows TF32 matmuls for the
    "default" policy only, and puts torch's global `allow_tf32` back when it returns.
    Raises :class:`~manualgrad.errors.MissingDependencyError` (an ImportError) without
    torch.
    """
    torch = _import_torch()
    if loss != "bce":
        raise ValueError(f"the torch baseline is written for bce, got {loss!r}")
    cuda = torch.cuda.is_available() and jax.devices()[0].platform == "gpu"
    dev = torch.device("cuda" if cuda else "cpu")
    tdtype = torch.float64 if np.asarray(X).dtype == np.float64 else torch.float32
    names = list(params)
    ps = {k: torch.tensor(np.asarray(params[k]), dtype=tdtype, device=dev) for k in names}
    for p in ps.values():
        p.requires_grad_()
    tX = torch.tensor(np.asarray(X), dtype=tdtype, device=dev)
    tY = torch.tensor(np.asarray(Y), dtype=tdtype, device=dev)
    torch_acts = {"relu": torch.relu, "tanh": torch.tanh, "sigmoid": torch.sigmoid}
    n_layers = len(params) // 2
    hidden = [torch_acts[a] for a in activations[:-1]]

    def step():
        with _tf32(torch, precision == "default") if cuda else contextlib.nullcontext():
            with torch.autocast(dev.type, torch.bfloat16, enabled=precision == "bf16"):
                A = tX
                for l in range(1, n_layers):
                    A = hidden[l - 1](ps[f"W{l}"] @ A + ps[f"b{l}"])
                Z = ps[f"W{n_layers}"] @ A + ps[f"b{n_layers}"]
            C = (
                torch.nn.functional.binary_cross_entropy_with_logits(
                    Z.to(tdtype), tY, reduction="sum"
                )
                / tY.shape[1]
            )
            grads = torch.autograd.grad(C, [ps[k] for k in names])
            if cuda:
                torch.cuda.synchronize()
        return C, dict(zip(names, grads, strict=True))

    def call() -> None:
        step()

    def result():
        C, grads = step()
        return C.detach().cpu().numpy(), {k: g.cpu().numpy() for k, g in grads.items()}

    return Step(call=call, result=result, compile_s=None, temp_bytes=None, flops_xla=None)
