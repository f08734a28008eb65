r"""`Conv2D(channels, kernel)`: a dense layer applied to every patch of an image.

Images are laid out (H, W, C, m), examples last (like X's columns). With kernel f,
stride s and padding p, the output has n_H = ⌊(H + 2p − f)/s⌋ + 1 rows and n_W columns,
T = n_H·n_W positions. Unfolding the padded input into its patches makes the
convolution formula (1)'s dense map, applied at every position t:

| symbol   | shape                      | meaning                                          |
|----------|----------------------------|--------------------------------------------------|
| `W`      | (C, f, f, C_prev)          | the filters; as a matrix (C, f·f·C_prev)          |
| `b`      | (C, 1)                     | one bias per output channel                      |
| `A_prev` | (H, W, C_prev, m)          | the layer's input images                         |
| `P`      | (f·f·C_prev, T, m)         | the patches: column (t, i) is patch t of example i |
| `Z`      | (C, T, m)                  | pre-activations, Z_t = W P_t + b                  |
| output   | (n_H, n_W, C, m)           | A = g(Z), as images                              |

A patch's features are ordered (row i, column j, channel c), row-major, which is the
order of W's last three axes, so `W.reshape(C, -1)` is the dense weight of the patches.

    Z_t = W P_t + b,  A = g(Z)                           forward, at every position t
    dZ = dA ⊙ g'(Z)                                      (5)
    dP = Wᵀ dZ                                           (4), at every position
    dA_prev = fold(dP), padding cropped                  the sum of overlapping patches
    (P, dZ), T positions per example                     → (2) and (1) in the engine
    Ż_t = W Ṗ_t + Ẇ P_t + ḃ,  Ṗ = patches(Ȧ_prev)       (6), at every position
    Ȧ = g'(Z) ⊙ Ż                                        (7)

so dW = (1/m) Σ_i Σ_t dz_t(i) p_t(i)ᵀ and db = (1/m) Σ_i Σ_t dz_t(i): formula (2)
summed over positions. Forward mode (curvature's G v) is (6) and (7) on the patches:
unfolding is linear, so the patches of Ȧ_prev are the tangent of the patches. Each line
is one small function below, which the layer and the course's `conv_forward` /
`conv_backward` (:mod:`manualgrad.course`) share. See docs/convolutions.md for the
derivation.

| function                  | shapes                                                        |
|---------------------------|---------------------------------------------------------------|
| `patches`                 | A_prev (H, W, C_prev, m) -> P (f·f·C_prev, T, m)              |
| `fold_patches`            | dP (f·f·C_prev, T, m) -> (H, W, C_prev, m): the adjoint       |
| `conv_pre_activation`     | W (C, f, f, C_prev), b (C, 1), P -> Z (C, T, m)               |
| `conv_input_grad`         | W, dZ (C, T, m) -> dA_prev (H, W, C_prev, m): (4) and fold     |
| `conv_pre_activation_jvp` | W, P, Ẇ, ḃ, Ṗ -> Ż (C, T, m): (6)                             |
| `as_images`, `as_positions` | (C, T, m) <-> (n_H, n_W, C, m)                              |

>>> import jax, manualgrad as mg
>>> net = mg.network([mg.layers.Conv2D(4, 3, pad=1), mg.layers.MaxPool2D(2),
...                   mg.layers.Flatten(), mg.layers.Dense(1, activation="sigmoid")])
>>> params = net.init((8, 8, 1), jax.random.key(0))  # one image (H, W, C)
>>> {k: v.shape for k, v in params.items()}
{'W1': (4, 3, 3, 1), 'b1': (4, 1), 'W2': (1, 64), 'b2': (1, 1)}
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import KW_ONLY, dataclass
from typing import Any, NamedTuple

import jax
import jax.numpy as jnp

from manualgrad._core import dense
from manualgrad._core.activations import HIDDEN_ACTIVATIONS, Activation, get_activation
from manualgrad._core.layer import Layer, Params, Product, Shape
from manualgrad._core.validation import check_layer_int
from manualgrad._errors import ConfigError, ShapeError
from manualgrad.layers._dense import INIT_SCALES, check_activation, check_init_method
from manualgrad.layers._patches import fold, output_size, unfold, zero_pad

Array = jax.Array

__all__ = [
    "Conv2D",
    "ConvCache",
    "as_images",
    "as_positions",
    "check_images",
    "conv_input_grad",
    "conv_pre_activation",
    "conv_pre_activation_jvp",
    "fold_patches",
    "patches",
]


def check_images(layer: str, shape: tuple[int, ...], *, batch: bool) -> None:
    """Raise a ShapeError unless `shape` is an image's (H, W, C), or a batch's (H, W, C, m)."""
    want = 4 if batch else 3
    if len(shape) != want:
        layout = "(H, W, C, m), examples last" if batch else "(H, W, C)"
        raise ShapeError(
            f"{layer} takes images {layout}, got shape {tuple(shape)}: give net.init one "
            "image's shape (H, W, C) and pass X as (H, W, C, m) — a batch of (m, H, W, C) "
            "becomes jnp.moveaxis(X, 0, -1); a flat (H·W·C, m) batch X.reshape(H, W, C, m)"
        )


def patches(A_prev: Array, f: int, s: int, p: int) -> Array:
    """P (f·f·C_prev, T, m): the f×f patches at stride s of A_prev (H, W, C_prev, m) padded by p.

    Column (t, i) is patch t = (h, w) of example i, a_pad[s·h : s·h + f, s·w : s·w + f, :]
    flattened with its features ordered (row i, column j, channel c), as W's last axes.
    """
    windows = unfold(zero_pad(A_prev, p), f, s)  # (f, f, n_H, n_W, C_prev, m)
    _, _, n_H, n_W, C_prev, m = windows.shape
    return windows.transpose(0, 1, 4, 2, 3, 5).reshape(f * f * C_prev, n_H * n_W, m)


def fold_patches(dP: Array, image_shape: tuple[int, ...], f: int, s: int, p: int) -> Array:
    """The adjoint of :func:`patches`: dP (f·f·C_prev, T, m) -> (H, W, C_prev, m).

    Each pixel gets the sum of the entries of every patch that covers it (:func:`fold`),
    and the padding's share is dropped (the padded zeros are constants). `image_shape`
    is A_prev's (H, W, C_prev, m).
    """
    H, W, C_prev, m = image_shape
    n_H, n_W = (H + 2 * p - f) // s + 1, (W + 2 * p - f) // s + 1
    windows = dP.reshape(f, f, C_prev, n_H, n_W, m).transpose(0, 1, 3, 4, 2, 5)
    padded = fold(windows, (H + 2 * p, W + 2 * p, C_prev, m), s)
    return padded[p : p + H, p : p + W]  # the padding's gradient is dropped


def conv_pre_activation(W: Array, b: Array, P: Array, precision: str = "default") -> Array:
    """Z_t = W P_t + b at every position: the dense Z = W A + b on the T·m patch columns.

    Shapes: W (C, f, f, C_prev) (as a matrix (C, f·f·C_prev)), b (C, 1),
    P (f·f·C_prev, T, m) -> Z (C, T, m).
    """
    C, (d, T, m) = W.shape[0], P.shape
    Z = dense.linear_forward(W.reshape(C, d), b, P.reshape(d, T * m), precision=precision)
    return Z.reshape(C, T, m)


def conv_input_grad(
    W: Array, dZ: Array, image_shape: tuple[int, ...], s: int, p: int, precision: str = "default"
) -> Array:
    """dA_prev: formula (4) at every position, dP_t = Wᵀ dZ_t, folded back onto the image.

    Shapes: W (C, f, f, C_prev), dZ (C, T, m) -> dA_prev `image_shape` (H, W, C_prev, m).
    This is the transposed convolution of dZ with the filters.
    """
    C, f = W.shape[0], W.shape[1]
    dP = dense.prev_activation_grad(W.reshape(C, -1), dZ, precision=precision)  # (4)
    return fold_patches(dP, image_shape, f, s, p)


def conv_pre_activation_jvp(
    W: Array,
    P: Array,
    W_dot: Array,
    b_dot: Array,
    P_dot: Array | None,
    precision: str = "default",
) -> Array:
    """Formula (6) at every position: Ż_t = W Ṗ_t + Ẇ P_t + ḃ, the dense (6) on the patches.

    Shapes: W, W_dot (C, f, f, C_prev), b_dot (C, 1), P, P_dot (f·f·C_prev, T, m) ->
    Ż (C, T, m). Ṗ = patches(Ȧ_prev) (unfolding is linear); None where the input does
    not move (the first layer).
    """
    C, (d, T, m) = W.shape[0], P.shape
    flat_dot = None if P_dot is None else P_dot.reshape(d, T * m)
    Z_dot = dense.linear_jvp(
        W.reshape(C, d),
        P.reshape(d, T * m),
        W_dot.reshape(C, d),
        b_dot,
        flat_dot,
        precision=precision,
    )  # (6)
    return Z_dot.reshape(C, T, m)


def as_images(Z: Array, n_H: int, n_W: int) -> Array:
    """Z (C, T, m) with T = n_H·n_W positions, row-major -> images (n_H, n_W, C, m)."""
    C, _, m = Z.shape
    return Z.reshape(C, n_H, n_W, m).transpose(1, 2, 0, 3)


def as_positions(A: Array) -> Array:
    """Images (n_H, n_W, C, m) -> (C, T, m), T = n_H·n_W positions row-major (as_images⁻¹)."""
    n_H, n_W, C, m = A.shape
    return A.transpose(2, 0, 1, 3).reshape(C, n_H * n_W, m)


class ConvCache(NamedTuple):
    """What a conv layer's backward needs: A_prev (H, W, C_prev, m), P (f·f·C_prev, T, m),
    Z and A (C, T, m)."""

    A_prev: Array
    P: Array
    Z: Array
    A: Array


@dataclass(frozen=True)
class Conv2D(Layer):
    """A 2-D convolution with `channels` filters of size `kernel`×`kernel`, then g.

    | argument      | meaning                                                         |
    |---------------|-----------------------------------------------------------------|
    | `channels`    | C, the number of filters (output channels)                       |
    | `kernel`      | f, the filters' height and width                                 |
    | `stride`      | s ≥ 1, the step between patches                                  |
    | `pad`         | p ≥ 0 zero pixels added on each side of H and W                  |
    | `activation`  | an elementwise activation (not softmax)                          |
    | `init_method` | "he" (√(2/(f·f·C_prev))), "xavier", "random", "zeros"            |

    Params: "W" (C, f, f, C_prev) and "b" (C, 1). Input (H, W, C_prev, m), output
    (n_H, n_W, C, m). A conv layer is a hidden layer: end the network with
    `Flatten()` and a `Dense` output layer.
    """

    channels: int
    kernel: int
    _: KW_ONLY
    stride: int = 1
    pad: int = 0
    activation: str = "relu"
    init_method: str = "he"

    def __post_init__(self) -> None:
        check_layer_int("Conv2D", "channels", self.channels)
        check_layer_int("Conv2D", "kernel", self.kernel)
        check_layer_int("Conv2D", "stride", self.stride)
        check_layer_int("Conv2D", "pad", self.pad, minimum=0)
        check_activation("Conv2D", self.activation, HIDDEN_ACTIVATIONS)
        if self.activation == "softmax":
            raise ConfigError(
                "`Conv2D(activation='softmax')`: softmax normalises over one axis of classes "
                "and ends a network; a conv layer needs an elementwise activation, e.g. 'relu' "
                "— put softmax on the Dense output layer after Flatten()"
            )
        check_init_method("Conv2D", self.init_method)

    @property
    def param_names(self) -> tuple[str, ...]:
        return ("W", "b")

    @property
    def name(self) -> str:
        return (
            f"Conv2D({self.channels}, {self.kernel}, stride={self.stride}, pad={self.pad}, "
            f"activation={self.activation!r})"
        )

    @property
    def g(self) -> Activation:
        """The activation record: g, g', g''."""
        return get_activation(self.activation)

    def output_shape(self, in_shape: Shape) -> Shape:
        """(n_H, n_W, C) for one image (H, W, C_prev), with a clear error if f does not fit."""
        check_images(self.name, in_shape, batch=False)
        H, W, _ = in_shape
        f, s, p = self.kernel, self.stride, self.pad
        n_H = output_size(H, f, s, layer=self.name, axis="H", pad=p)
        n_W = output_size(W, f, s, layer=self.name, axis="W", pad=p)
        return (n_H, n_W, self.channels)

    def init(self, key: Array, in_shape: Shape, dtype: Any) -> tuple[Params, Shape]:
        """W ~ N(0, s²) of shape (C, f, f, C_prev), s from the init method and f·f·C_prev; b = 0."""
        out_shape = self.output_shape(tuple(in_shape))
        C_prev = in_shape[2]
        f = self.kernel
        scale = INIT_SCALES[self.init_method](f * f * C_prev)
        W = jax.random.normal(key, (self.channels, f, f, C_prev), dtype) * scale
        return {"W": W, "b": jnp.zeros((self.channels, 1), dtype)}, out_shape

    def _check_input(self, W: Array, A_prev: Array) -> None:
        check_images(self.name, A_prev.shape, batch=True)
        C_prev = W.shape[3]
        if A_prev.shape[2] != C_prev:
            hint = (
                " — the last axis has C_prev: did you pass images examples first, "
                "(m, H, W, C)? use jnp.moveaxis(X, 0, -1)"
                if A_prev.shape[3] == C_prev
                else f" — build the params with net.init((H, W, {A_prev.shape[2]}), key) for "
                "these images"
            )
            raise ShapeError(
                f"{self.name}: expected images (H, W, C_prev, m) with C_prev = W.shape[3] = "
                f"{C_prev} channels, got shape {tuple(A_prev.shape)}{hint}"
            )

    def forward(
        self, params: Mapping[str, Array], A_prev: Array, precision: str
    ) -> tuple[Array, ConvCache]:
        """Z_t = W P_t + b at every position t, A = g(Z); output (n_H, n_W, C, m)."""
        W, b = params["W"], params["b"]
        self._check_input(W, A_prev)
        n_H, n_W, _ = self.output_shape(tuple(A_prev.shape[:3]))
        P = patches(A_prev, self.kernel, self.stride, self.pad)
        Z = conv_pre_activation(W, b, P, precision)  # (C, T, m)
        A = self.g.forward(Z)
        out = as_images(A, n_H, n_W)
        return out, ConvCache(A_prev, P, Z, A)

    def backward(
        self,
        params: Mapping[str, Array],
        cache: ConvCache,
        dA: Array,
        precision: str,
        need_dA_prev: bool = True,
    ) -> tuple[Array | None, tuple[Product, ...]]:
        """dZ = dA ⊙ g'(Z) (5); dP = Wᵀ dZ (4) folded back onto the input; product (P, dZ).

        Shapes: dA (n_H, n_W, C, m) -> dA_prev (H, W, C_prev, m); the product's A = P
        (f·f·C_prev, T, m) and dZ (C, T, m).
        """
        dZ = dense.activation_backward(as_positions(dA), cache.Z, cache.A, self.g)  # (5)
        dA_prev = None
        if need_dA_prev:
            shape = cache.A_prev.shape
            dA_prev = conv_input_grad(params["W"], dZ, shape, self.stride, self.pad, precision)
        return dA_prev, (Product("W", "b", cache.P, dZ),)

    def jvp(
        self,
        params: Mapping[str, Array],
        tangent: Mapping[str, Array],
        cache: ConvCache,
        A_prev: Array,
        A_prev_dot: Array | None,
        precision: str,
    ) -> Array:
        """Ȧ = g'(Z) ⊙ Ż (7), Ż_t = W Ṗ_t + Ẇ P_t + ḃ (6) on the patches, Ṗ = patches(Ȧ_prev).

        Shapes: Ȧ_prev (H, W, C_prev, m) or None (the first layer) -> Ȧ (n_H, n_W, C, m).
        """
        f, s, p = self.kernel, self.stride, self.pad
        P_dot = None if A_prev_dot is None else patches(A_prev_dot, f, s, p)
        W, W_dot, b_dot = params["W"], tangent["W"], tangent["b"]
        Z_dot = conv_pre_activation_jvp(W, cache.P, W_dot, b_dot, P_dot, precision)  # (6)
        A_dot = dense.activation_jvp(Z_dot, cache.Z, cache.A, self.g)  # (7)
        n_H, n_W, _ = self.output_shape(tuple(A_prev.shape[:3]))
        return as_images(A_dot, n_H, n_W)
