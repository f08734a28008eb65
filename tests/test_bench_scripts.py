"""The scripts in bench/ use only manualgrad's public API and the one harness."""

from __future__ import annotations

import re
from pathlib import Path

import pytest

BENCH = Path(__file__).resolve().parents[1] / "bench"
SCRIPTS = sorted(p for p in BENCH.iterdir() if p.suffix in (".py", ".sh"))

#: `manualgrad._x`, `from manualgrad._x import`, `from manualgrad import _x`, or
#: `name._private(` on any module alias
PRIVATE = re.compile(
    r"manualgrad\._\w+|from manualgrad\S* import .*\b_\w+|\b[A-Za-z]\w*\._[a-z]\w*\s*\("
)


def test_there_are_bench_scripts():
    assert {"per_example.py", "train.py", "parallel.py", "run_gpu.sh"} <= {p.name for p in SCRIPTS}


@pytest.mark.parametrize("script", SCRIPTS, ids=lambda p: p.name)
def test_bench_script_calls_no_private_function(script):
    hits = [
        f"{script.name}:{n}: {line.strip()}"
        for n, line in enumerate(script.read_text().splitlines(), start=1)
        if PRIVATE.search(line)
    ]
    assert not hits, "\n".join(hits)


@pytest.mark.parametrize("script", [p for p in SCRIPTS if p.suffix == ".py"], ids=lambda p: p.name)
def test_bench_script_times_with_the_one_harness(script):
    text = script.read_text()
    assert "from manualgrad import benchmark" in text or "from manualgrad.benchmark import" in text
    assert "perf_counter" not in text  # timing lives in manualgrad.benchmark only
