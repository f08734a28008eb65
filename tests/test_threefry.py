"""manualgrad._core.threefry against jax.random: the same numbers, bit for bit.

The oracle is jax.random itself (its threefry2x32 primitive and transforms), under both
settings of `jax_threefry_partitionable`, for typed and raw keys, float32 and float64,
odd and even sizes. Then the private step: its noise and its sampler draw exactly what
jax.random draws from the same keys.
"""

from __future__ import annotations

import functools

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from hypothesis import given
from hypothesis import strategies as st

import manualgrad as mg
from manualgrad import privacy, threefry

SIZES = (1, 2, 3, 1024, 1025)


def key_of(words, typed):
    data = jnp.asarray(words, jnp.uint32)
    return jax.random.wrap_key_data(data, impl="threefry2x32") if typed else data


def same(a, b):
    if jnp.issubdtype(a.dtype, jax.dtypes.prng_key):
        a, b = jax.random.key_data(a), jax.random.key_data(b)
    return a.shape == b.shape and a.dtype == b.dtype and bool(np.array_equal(a, b))


@functools.cache
def draws(partitionable, dtype, sizes):
    """One compiled program per scheme and dtype (the key traced): both sides of every draw."""

    def both(key):
        return {
            (name, n, side): getattr(module, name)(key, (n,), dtype)
            for name in ("normal", "uniform")
            for n in sizes
            for side, module in (("ours", threefry), ("jax", jax.random))
        }

    with jax.threefry_partitionable(partitionable):
        return jax.jit(both)


def assert_draws_agree(key, partitionable, dtype=jnp.float32, sizes=SIZES):
    with jax.threefry_partitionable(partitionable):
        out = draws(partitionable, dtype, sizes)(key)
    for name in ("normal", "uniform"):
        for n in sizes:
            assert same(out[name, n, "ours"], out[name, n, "jax"]), (name, n)


words = st.tuples(st.integers(0, 2**32 - 1), st.integers(0, 2**32 - 1))


@pytest.mark.parametrize("partitionable", [True, False])
@pytest.mark.parametrize("typed", [True, False])
@given(words=words)
def test_bits_turned_into_normals_and_uniforms_are_jax_randoms(words, typed, partitionable):
    assert_draws_agree(key_of(words, typed), partitionable)


@pytest.mark.parametrize("partitionable", [True, False])
def test_float64_normals_and_uniforms_are_jax_randoms(x64, partitionable):
    for seed in (0, 2**31 + 5):
        assert_draws_agree(jax.random.key(seed), partitionable, jnp.float64, (1, 3, 1024))


@functools.cache
def keys_program(partitionable, nums, ts):
    def both(key):
        split = {num: (threefry.split(key, num), jax.random.split(key, num)) for num in nums}
        fold = {
            t: (threefry.fold_in(key, jnp.int32(t)), jax.random.fold_in(key, jnp.int32(t)))
            for t in ts
        }
        return split, fold

    with jax.threefry_partitionable(partitionable):
        return jax.jit(both)


@pytest.mark.parametrize("partitionable", [True, False])
@pytest.mark.parametrize("typed", [True, False])
def test_split_and_fold_in_give_jax_randoms_keys(typed, partitionable):
    key = key_of((0x12345678, 0x9ABCDEF0), typed)
    nums, ts = (1, 2, 3, 5), (0, 1, 12345, -3, 2**31 - 1)
    with jax.threefry_partitionable(partitionable):
        split, fold = keys_program(partitionable, nums, ts)(key)
    for num, (ours, theirs) in split.items():
        assert same(ours, theirs), num
    for t, (ours, theirs) in fold.items():
        assert same(ours, theirs), t


def test_the_scheme_argument_overrides_jaxs_setting():
    key = jax.random.key(3)
    with jax.threefry_partitionable(False):
        want = jax.random.normal(key, (7,))
    with jax.threefry_partitionable(True):
        assert same(threefry.normal(key, (7,), partitionable=False), want)
        assert not same(threefry.normal(key, (7,)), want)  # the schemes differ


def test_multi_dimensional_shapes_are_the_flat_draw_reshaped():
    key = jax.random.key(11)
    for partitionable in (True, False):
        with jax.threefry_partitionable(partitionable):
            assert same(threefry.normal(key, (3, 5)), jax.random.normal(key, (3, 5)))


def test_other_generators_and_dtypes_are_handed_to_jax_random():
    rbg = jax.random.key(0, impl="rbg")
    assert same(threefry.normal(rbg, (5,)), jax.random.normal(rbg, (5,)))
    assert same(threefry.split(rbg, 3), jax.random.split(rbg, 3))
    assert same(
        threefry.split(jax.random.key(0), (2, 3)), jax.random.split(jax.random.key(0), (2, 3))
    )
    key = jax.random.key(0)
    got = threefry.normal(key, (5,), jnp.bfloat16)
    assert same(got, jax.random.normal(key, (5,), jnp.bfloat16))
    batch = jax.random.split(key, 2)  # a batch of keys: jax.random's rules (vmap)
    assert same(
        jax.vmap(threefry.fold_in, (0, None))(batch, 3),
        jax.vmap(jax.random.fold_in, (0, None))(batch, 3),
    )


def test_the_hash_unrolled_leaves_no_loop_in_the_compiled_noise():
    """What the module is for: jax's CPU lowering of the same draw is a while loop."""
    key = jax.random.key(0)
    ours = jax.jit(lambda k: threefry.normal(k, (4096,))).lower(key).as_text()
    assert "while" not in ours
    assert "threefry" not in ours


def test_the_private_steps_noise_is_jax_randoms_normal_of_its_key():
    net = mg.network(["relu", "sigmoid"], "bce")
    params = net.init([3, 4, 1], jax.random.key(0))
    zero = {k: jnp.zeros_like(v) for k, v in params.items()}
    key = jax.random.key(5)
    noisy = privacy.add_noise(zero, key, clip_norm=2.0, noise_multiplier=1.5, normaliser=4.0)
    names = sorted(params)
    P = sum(params[k].size for k in names)
    with jax.threefry_partitionable(False):
        xi = jax.random.normal(key, (1024,))  # P rounded up to 1024
    want = np.split(
        np.asarray(xi[:P]) * (1.5 * 2.0 / 4.0), np.cumsum([params[k].size for k in names])[:-1]
    )
    for name, piece in zip(names, want, strict=True):
        np.testing.assert_array_equal(noisy[name], piece.reshape(params[name].shape))


def test_the_samplers_batch_is_the_one_jax_random_uniform_gives(monkeypatch):
    key, n, q, K = jax.random.key(9), 1000, 0.05, 90
    ours = privacy.poisson_batch(key, n, q, K)
    monkeypatch.setattr(
        threefry, "uniform", lambda k, shape, dtype: jax.random.uniform(k, shape, dtype)
    )
    theirs = privacy.poisson_batch(key, n, q, K)
    assert bool(ours.mask.any()) and not bool(ours.mask.all())
    assert same(ours.index, theirs.index) and same(ours.mask, theirs.mask)
