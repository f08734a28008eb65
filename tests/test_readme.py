"""The README's ```python blocks run as written, so its examples cannot rot."""

from __future__ import annotations

import re
from pathlib import Path

import jax
import pytest

README = Path(__file__).resolve().parents[1] / "README.md"
BLOCKS = re.findall(r"^```python\n(.*?)^```", README.read_text(encoding="utf-8"), re.S | re.M)


def test_readme_has_python_examples():
    assert len(BLOCKS) >= 1


def test_readme_keeps_its_two_opening_commands():
    first = re.search(r"```bash\n(.*?)```", README.read_text(encoding="utf-8"), re.S).group(1)
    assert first.strip().splitlines() == [
        "python3 -m pip install -e . && manualgrad check",
        'python3 -m pip install -e ".[test]" && python3 -m pytest -q',
    ]


@pytest.mark.parametrize("code", BLOCKS, ids=[f"block{i}" for i in range(1, len(BLOCKS) + 1)])
def test_readme_python_block_runs(code, capsys):
    with jax.numpy_dtype_promotion("standard"):  # a reader's session; optax is not strict-safe
        exec(compile(code, str(README), "exec"), {"__name__": "__readme__"})
    assert capsys.readouterr().out  # every example prints its result
