"""Smoke test of `manualgrad bench`: a tiny grid runs in seconds and its JSON lines parse."""

from __future__ import annotations

import argparse
import json

import pytest

from manualgrad import benchmark
from manualgrad._cli import bench

GRID_FIELDS = {
    "device", "jax", "kind", "policy", "layer_dims", "m", "flops_model", "agree", "reps",
    "ratio", "ratio_min", "ratio_paired", "bridge_ratio",
    *(f"{v}_{k}" for v in benchmark.VARIANTS
      for k in ("ms", "tflops", "frac_ceiling", "compile_s", "temp_bytes", "flops_xla")),
    "manual_max_rel_err", "bridge_max_rel_err",
}  # fmt: skip


def _run(argv):
    parser = argparse.ArgumentParser()
    bench.add_arguments(parser)
    return bench.run(parser.parse_args(argv))


@pytest.fixture(scope="module")
def rows(tmp_path_factory):
    path = tmp_path_factory.mktemp("bench") / "out.jsonl"
    argv = ["--json", str(path), "--grid", "6,5,3,1@12",
            "--precision", "f32-highest", "--precision", "f64",
            "--reps", "3", "--budget", "0.05", "--ceiling-n", "32"]  # fmt: skip
    assert _run(argv) == 0
    return [json.loads(line) for line in path.read_text().splitlines()]


def test_bench_json_lines_have_one_ceiling_per_policy_and_one_row_per_point(rows):
    kinds = [(r["kind"], r["policy"]) for r in rows]
    assert sorted(k for k in kinds if k[0] == "ceiling") == [
        ("ceiling", "f32-highest"),
        ("ceiling", "f64"),
    ]
    assert sorted((r["policy"], r["m"]) for r in rows if r["kind"] == "grid") == [
        ("f32-highest", 12),
        ("f64", 12),
    ]


def test_bench_grid_rows_have_every_field_and_agree(rows):
    for r in (r for r in rows if r["kind"] == "grid"):
        assert "error" not in r, r["error"]
        assert set(r) >= GRID_FIELDS, GRID_FIELDS - set(r)
        assert r["agree"] is True
        assert r["manual_ms"] > 0 and r["autodiff_ms"] > 0
        assert r["ratio"] == pytest.approx(r["manual_ms"] / r["autodiff_ms"])
        assert r["flops_model"] == benchmark.model_flops(r["layer_dims"], r["m"])


def test_model_flops_counts_forward_dW_and_dA_except_dA0():
    # [3, 2, 1], m = 5: forward 2·5·(6 + 2), dW the same, dA[1] 2·5·2; no dA[0].
    assert benchmark.model_flops([3, 2, 1], 5) == 80 + 80 + 20


def test_parse_case_reads_dims_at_m_and_rejects_garbage():
    assert benchmark.parse_case("12288,20,7,5,1@209") == benchmark.Case((12288, 20, 7, 5, 1), 209)
    with pytest.raises(benchmark.ConfigError, match="12288,20,7,5,1@209"):
        benchmark.parse_case("12288x20")
