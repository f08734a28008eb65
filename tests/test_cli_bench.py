"""The benchmark harness: its statistics, its checks, its output. No timing is asserted."""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
from pathlib import Path

import jax
import jax.numpy as jnp
import pytest
from hypothesis import given
from hypothesis import strategies as st
from rich.console import Console

from manualgrad import benchmark
from manualgrad._cli import bench
from manualgrad.errors import ConfigError

ROOT = Path(__file__).resolve().parents[1]
RATIO_FIELDS = {"median", "low", "high", "rounds", "verdict"}


def _run(argv):
    parser = argparse.ArgumentParser()
    bench.add_arguments(parser)
    return bench.run(parser.parse_args(argv))


@pytest.fixture(scope="session")  # once per worker, even when xdist interleaves modules
def rows(tmp_path_factory):
    path = tmp_path_factory.mktemp("bench") / "out.jsonl"
    argv = ["--json", str(path), "--grid", "6,5,3,1@12",
            "--precision", "f32-highest", "--precision", "f64",
            "--rounds", "3", "--calls", "1", "--ceiling-n", "32", "--diagnostics"]  # fmt: skip
    assert _run(argv) == 0
    return [json.loads(line) for line in path.read_text().splitlines()]


# --------------------------------------------------------------------------- statistics


def test_ratio_is_the_median_of_per_round_ratios_not_the_ratio_of_medians():
    # per-round ratios 0.5, 3, 2/3: their median is 2/3; the medians' ratio would be 2/2 = 1
    r = benchmark.ratio_interval([1.0, 3.0, 2.0], [2.0, 1.0, 3.0])
    assert r.median == pytest.approx(2 / 3)
    assert r.rounds == 3
    assert 0.5 <= r.low <= r.median <= r.high <= 3.0


def test_identical_per_round_ratios_give_a_zero_width_interval():
    # load moves both timings of a round together: the ratio, and so the interval, stay put
    base = [1.0, 5.0, 2.0, 9.0, 3.0, 4.0, 7.0]
    r = benchmark.ratio_interval([0.9 * t for t in base], base)
    assert (r.low, r.median, r.high) == pytest.approx((0.9, 0.9, 0.9))


@given(st.lists(st.tuples(st.floats(1e-4, 1.0), st.floats(1e-4, 1.0)), min_size=2, max_size=40))
def test_bootstrap_interval_covers_the_median_within_the_observed_ratios(pairs):
    times, base = zip(*pairs, strict=True)
    ratios = [a / b for a, b in pairs]
    r = benchmark.ratio_interval(times, base)
    assert min(ratios) - 1e-12 <= r.low <= r.median <= r.high <= max(ratios) + 1e-12


def test_more_rounds_narrow_the_interval():
    key_a, key_b = jax.random.split(jax.random.key(0))
    noise = 1 + 0.1 * jax.random.normal(key_a, (400,))
    base = 1 + 0.1 * jax.random.normal(key_b, (400,))
    few = benchmark.ratio_interval(0.95 * noise[:10], base[:10])
    many = benchmark.ratio_interval(0.95 * noise, base)
    assert many.high - many.low < few.high - few.low


@pytest.mark.parametrize(
    ("low", "high", "verdict"),
    [(0.90, 0.99, "faster"), (0.95, 1.00, "tie"), (0.99, 1.02, "tie"), (1.01, 1.10, "slower")],
    ids=["below-1", "touching-1", "straddling-1", "above-1"],
)
def test_an_interval_that_contains_one_is_a_tie(low, high, verdict):
    assert benchmark.Ratio((low + high) / 2, low, high, 9).verdict == verdict


def test_rounds_alternate_the_order_of_the_variants():
    calls = []
    thunks = {name: (lambda name=name: calls.append(name)) for name in "ab"}
    timings = benchmark.paired_rounds(thunks, rounds=4, calls=2, warmup=1)
    assert calls[2:] == list("aabbbbaaaabbbbaa")
    assert timings.rounds == 4 and timings.calls == 2
    assert [len(v) for v in timings.seconds.values()] == [4, 4]


def test_paired_ratio_times_the_thunk_against_its_baseline_in_shared_rounds():
    calls = []
    pairing = benchmark.paired_ratio(
        lambda: calls.append("t"), lambda: calls.append("b"), rounds=3, calls=2
    )
    assert calls.count("t") == calls.count("b")  # warm-up and every round call both
    assert pairing.ratio.rounds == 3 and pairing.calls == 2
    assert pairing.ms > 0 and pairing.baseline_ms > 0
    assert pairing.as_json() == {**pairing.ratio.as_json(), "calls": 2}


# --------------------------------------------------------------------------- checks


def _idiomatic_step(scale=1.0):
    params, X, Y = benchmark.problem((5, 4, 1), 8, jnp.float32)
    vag = benchmark.idiomatic_value_and_grad(("relu", "sigmoid"))

    def fn(p, X, Y):
        C, g = vag(p, X, Y)
        return C, jax.tree.map(lambda v: scale * v, g)

    return benchmark.jax_step(fn, params, X, Y)


def test_a_step_that_disagrees_with_the_baseline_is_reported_and_not_timed():
    steps = {"jax": _idiomatic_step(), "manual": _idiomatic_step(scale=1.01)}
    row = benchmark.compare_steps(steps, tol=1e-4, rounds=3)
    assert row["agree"] is False
    assert "manual" in row["error"]
    assert row["manual_max_rel_err"] == pytest.approx(0.01, rel=1e-3)
    assert "manual_ms" not in row and "manual_vs_jax" not in row


@pytest.mark.xdist_group("bench_rows")  # the tests of `rows` share its one bench run
def test_idiomatic_baseline_agrees_with_manualgrad_in_float64(rows):
    grid = [r for r in rows if r["kind"] == "grid" and r["policy"] == "f64"]
    assert grid and all(r["manual_max_rel_err"] <= 1e-12 for r in grid)


# --------------------------------------------------------------------------- output


@pytest.mark.xdist_group("bench_rows")
def test_json_lines_are_machine_then_ceilings_then_grid_points(rows):
    assert [r["kind"] for r in rows] == ["machine", "ceiling", "ceiling", "grid", "grid"]
    info = rows[0]
    assert {"device", "cores", "load_avg", "jax", "python", "date", "rounds"} <= set(info)
    assert [(r["policy"], r["n"]) for r in rows[1:3]] == [("f32-highest", 32), ("f64", 32)]


@pytest.mark.xdist_group("bench_rows")
def test_grid_rows_carry_each_ratio_with_its_interval_and_rounds(rows):
    for r in (r for r in rows if r["kind"] == "grid"):
        assert "error" not in r, r["error"]
        assert r["agree"] is True and r["rounds"] == 3 and r["calls"] == 1
        assert r["flops_model"] == benchmark.model_flops(r["layer_dims"], r["m"])
        for name in ("manual", "mg_autodiff", "bridge"):
            ratio = r[f"{name}_vs_jax"]
            assert set(ratio) == RATIO_FIELDS
            assert ratio["low"] <= ratio["median"] <= ratio["high"] and ratio["rounds"] == 3
            assert r[f"{name}_ms"] > 0
        for name in ("manual", "jax"):  # paired with the matmul: an interval, in (0, ∞)
            frac = r[f"{name}_frac_peak"]
            assert 0 < frac["low"] <= frac["median"] <= frac["high"] and frac["rounds"] == 3
        assert r["jax_ms"] > 0


def _render(tab, width):
    console = Console(width=width, record=True, color_system=None)
    console.print(tab)
    return [line.rstrip() for line in console.export_text().splitlines()]


def _synthetic_rows():
    """The longest labels the default grids produce, every policy, with ratios."""
    ratio = {"median": 0.987, "low": 0.951, "high": 1.012, "rounds": 21, "verdict": "tie"}
    grid = [
        {"kind": "grid", "policy": policy, "layer_dims": list(case.layer_dims), "m": case.m,
         "manual_ms": 12345.678, "jax_ms": 12345.678,
         "manual_frac_peak": {"median": 0.999, "low": 0.99, "high": 1.0, "rounds": 21},
         "manual_vs_jax": ratio, "eqx_vs_jax": ratio, "torch_vs_jax": ratio}
        for policy in benchmark.POLICIES
        for case in benchmark.GPU_GRID + benchmark.CPU_GRID
    ]  # fmt: skip
    failed = {"kind": "grid", "policy": "f32-highest", "layer_dims": [1024, 4096, 4096, 4096, 1],
              "m": 65536, "agree": False,
              "error": "XlaRuntimeError('RESOURCE_EXHAUSTED: Out of memory while trying to "
                       "allocate 17179869184 bytes.')" * 3}  # fmt: skip
    grid.append(failed)
    info = {"kind": "machine", "device": "cuda: NVIDIA H200", "cores": 16, "date": "2026-11-28"}
    ceilings = [{"kind": "ceiling", "policy": p, "tflops": 618.0} for p in benchmark.POLICIES]
    return [info, *ceilings, *grid]


def test_default_table_fits_100_columns_without_wrapping_or_cropping():
    tab = benchmark.table(_synthetic_rows())
    narrow, roomy = _render(tab, 100), _render(tab, 300)
    assert max(len(line) for line in narrow) <= 100
    assert narrow == roomy  # the same lines at 300 columns: nothing was wrapped or cut
    assert all("…" not in line for line in narrow)
    assert "RESOURCE_EXHAUSTED" in "\n".join(narrow)  # a failed point's message, wrapped


def test_the_bench_command_fits_100_columns_in_characters_not_bytes(monkeypatch, capsys):
    # The table's rule is U+2500 (3 bytes in UTF-8): a 96-character line is 288 bytes.
    monkeypatch.setattr(benchmark, "run", lambda *a, **k: _synthetic_rows())
    monkeypatch.setenv("COLUMNS", "100")
    from manualgrad._cli import bench

    bench.main(["--quick"])
    lines = capsys.readouterr().out.splitlines()
    assert max(len(line) for line in lines) <= 100
    assert any(line.startswith("f64 ") for line in lines) and all("…" not in x for x in lines)


def test_wide_table_adds_the_other_baselines():
    header = "\n".join(_render(benchmark.table(_synthetic_rows(), wide=True), 400)[:6])
    assert "eqx/(a)" in header and "torch/(a)" in header
    assert "eqx" not in "\n".join(_render(benchmark.table(_synthetic_rows()), 100)[:6])


def test_network_label_writes_a_run_of_equal_widths_once():
    assert benchmark.network_label((1024, 4096, 4096, 4096, 1), 8192) == "1024,4096×3,1 @8192"
    assert benchmark.network_label((784, 256, 256, 1), 64) == "784,256,256,1 @64"


def test_model_flops_counts_forward_dW_and_dA_except_dA0():
    # [3, 2, 1], m = 5: forward 2·5·(6 + 2), dW the same, dA[1] 2·5·2; no dA[0].
    assert benchmark.model_flops([3, 2, 1], 5) == 80 + 80 + 20


def test_parse_case_reads_dims_at_m_and_rejects_garbage():
    assert benchmark.parse_case("12288,20,7,5,1@209") == benchmark.Case((12288, 20, 7, 5, 1), 209)
    with pytest.raises(ConfigError, match="12288,20,7,5,1@209"):
        benchmark.parse_case("12288x20")


def test_torch_baseline_leaves_the_process_environment_as_it_found_it(tmp_path, monkeypatch):
    # a stand-in `torch` that records the OpenMP wait policy it was loaded under
    (tmp_path / "torch").mkdir()
    (tmp_path / "torch" / "__init__.py").write_text(
        "import os\nLOADED_WITH = os.environ.get('OMP_WAIT_POLICY')\n"
    )
    monkeypatch.syspath_prepend(str(tmp_path))
    monkeypatch.setitem(sys.modules, "torch", None)  # undone last: no stand-in outlives the test
    monkeypatch.delitem(sys.modules, "torch")
    monkeypatch.delenv("OMP_WAIT_POLICY", raising=False)
    params, X, Y = benchmark.problem((3, 2, 1), 4, jnp.float32)
    with pytest.raises(ValueError, match="written for bce"):  # after the import, before torch use
        benchmark.torch_step(params, X, Y, activations=("relu", "sigmoid"), loss="mse")
    assert sys.modules["torch"].LOADED_WITH == "PASSIVE"  # torch's OpenMP threads sleep
    assert "OMP_WAIT_POLICY" not in os.environ  # and nobody else's are changed


@pytest.mark.parametrize(
    "code",
    [
        "import manualgrad, manualgrad.cli",
        "from manualgrad.cli import main; main(['check', '--m', '3'])",
        "from manualgrad.cli import main; main(['train', '--help'])",
        "from manualgrad.cli import main; main(['--help'])",
    ],
    ids=["import", "check", "train-help", "help"],
)
def test_only_manualgrad_bench_imports_the_benchmark_harness(code):
    script = f"import sys\ntry:\n    {code}\nexcept SystemExit:\n    pass\n"
    script += "assert 'manualgrad.benchmark' not in sys.modules, 'harness imported'\n"
    env = {**os.environ, "PYTHONPATH": str(ROOT / "src")}
    proc = subprocess.run(
        [sys.executable, "-c", script], env=env, capture_output=True, text=True, timeout=300
    )
    assert proc.returncode == 0, proc.stderr[-2000:]


def test_json_lines_append_the_machine_then_each_row(tmp_path):
    path = tmp_path / "run.jsonl"
    benchmark.append_json_lines(str(path), [{"a": 1}, {"b": [2.5, None]}])
    benchmark.append_json_lines(str(path), [{"c": "x"}], header=False)
    lines = [json.loads(line) for line in path.read_text().splitlines()]
    assert set(lines[0]) == {"machine"} and lines[0]["machine"]["cores"] >= 1
    assert lines[1:] == [{"a": 1}, {"b": [2.5, None]}, {"c": "x"}]
