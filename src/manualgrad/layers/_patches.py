r"""Windows of an image batch and their inverse: what convolution and pooling share.

Images are laid out (H, W, C, m), examples last. A window of size f at stride s starts
at (s·h, s·w) for h < n_H = ⌊(H − f)/s⌋ + 1 and w < n_W = ⌊(W − f)/s⌋ + 1.

| function       | shapes                                                    |
|----------------|-----------------------------------------------------------|
| `output_size`  | (H, f, s) -> n_H, with a clear error when f does not fit  |
| `zero_pad`     | A (H, W, C, m) -> (H + 2p, W + 2p, C, m), zeros around    |
| `unfold`       | A (H, W, C, m) -> windows (f, f, n_H, n_W, C, m)          |
| `fold`         | windows (f, f, n_H, n_W, C, m) -> (H, W, C, m), summed    |

`fold` is the adjoint of `unfold`: each input pixel receives the sum of the entries of
every window that covers it (col2im; overlapping windows add). `unfold` is f² strided
slices and `fold` their adjoints, f² zero paddings (s − 1 zeros between entries) added
up, so a reader sees the index arithmetic of the course's loops: window (h, w) reads
A[s·h + i, s·w + j] for i, j < f, and gives its gradient back to the same pixel.
"""

from __future__ import annotations

import jax
import jax.numpy as jnp

from manualgrad._errors import ShapeError

Array = jax.Array

__all__ = ["fold", "output_size", "unfold", "zero_pad"]


def output_size(n: int, f: int, s: int, *, layer: str, axis: str, pad: int = 0) -> int:
    """⌊(n + 2·pad − f)/s⌋ + 1, the number of windows along an axis of n pixels."""
    if f > n + 2 * pad:
        image = (
            f"padded image is {n + 2 * pad} along {axis} ({n} + 2·{pad})"
            if pad
            else f"image is {n} along {axis}"
        )
        raise ShapeError(
            f"{layer}: the window is {f} pixels but the {image}: expected a kernel/pool size "
            f"≤ {n + 2 * pad} — use a smaller kernel, more padding, or fewer pooling layers "
            "before this one"
        )
    return (n + 2 * pad - f) // s + 1


def zero_pad(A: Array, p: int) -> Array:
    """A (H, W, C, m) with p zero rows above and below and p zero columns on each side:
    (H + 2p, W + 2p, C, m) (the course's `zero_pad`, examples last)."""
    return jnp.pad(A, ((p, p), (p, p), (0, 0), (0, 0)))


def unfold(A: Array, f: int, s: int) -> Array:
    """The f×f windows of A at stride s: A (H, W, C, m) -> (f, f, n_H, n_W, C, m).

    Entry [i, j, h, w] is A[s·h + i, s·w + j], the (i, j) pixel of window (h, w).
    """
    H, W = A.shape[0], A.shape[1]
    n_H, n_W = (H - f) // s + 1, (W - f) // s + 1
    rows = []
    for i in range(f):
        cols = []
        for j in range(f):
            cols.append(A[i : i + s * (n_H - 1) + 1 : s, j : j + s * (n_W - 1) + 1 : s])
        rows.append(jnp.stack(cols))
    return jnp.stack(rows)


def fold(windows: Array, image_shape: tuple[int, ...], s: int) -> Array:
    """The adjoint of :func:`unfold`: windows (f, f, n_H, n_W, C, m) -> (H, W, C, m).

    Pixel (y, x) gets Σ over every window (h, w) and offset (i, j) with s·h + i = y and
    s·w + j = x of windows[i, j, h, w]: the sum of the overlapping windows (col2im).
    Offset (i, j) of every window lands at rows i, i + s, …: a zero padding with s − 1
    zeros between the entries and i before them (the adjoint of the strided slice).
    """
    f, n_H, n_W = windows.shape[0], windows.shape[2], windows.shape[3]
    H, W = image_shape[0], image_shape[1]
    zero = jnp.zeros((), windows.dtype)
    out = jnp.zeros(image_shape, windows.dtype)
    for i in range(f):
        for j in range(f):
            placed = jax.lax.pad(
                windows[i, j],
                zero,
                (
                    (i, H - i - s * (n_H - 1) - 1, s - 1),
                    (j, W - j - s * (n_W - 1) - 1, s - 1),
                    (0, 0, 0),
                    (0, 0, 0),
                ),
            )
            out = out + placed
    return out
