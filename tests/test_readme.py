"""The README's ```python blocks run as written, so its examples cannot rot."""

from __future__ import annotations

import re
import tomllib
from pathlib import Path

import jax
import pytest

README = Path(__file__).resolve().parents[1] / "README.md"
PYPROJECT = README.parent / "pyproject.toml"
BLOCKS = re.findall(r"^```python\n(.*?)^```", README.read_text(encoding="utf-8"), re.S | re.M)


def _opening_commands() -> list[str]:
    first = re.search(r"```bash\n(.*?)```", README.read_text(encoding="utf-8"), re.S).group(1)
    return first.strip().splitlines()


def test_ci_runs_the_readmes_test_command():
    """The second set-up command is the test command; `.ci/run` must run exactly it."""
    commands = _opening_commands()
    assert len(commands) == 2, commands
    ci = (README.parent / ".ci" / "run").read_text(encoding="utf-8").splitlines()
    assert commands[1] in ci


def test_the_first_set_up_command_installs_what_train_plot_needs():
    """`manualgrad train --plot` imports matplotlib: the first command must install it."""
    match = re.match(
        r"python3 -m pip install -e \.|python3 -m pip install -e \"\.\[(.*?)\]\"",
        _opening_commands()[0],
    )
    assert match, _opening_commands()[0]
    project = tomllib.loads(PYPROJECT.read_text(encoding="utf-8"))["project"]
    installed = list(project["dependencies"])
    for extra in (match.group(1) or "").split(","):
        installed += project["optional-dependencies"].get(extra.strip(), [])
    assert any(re.match(r"matplotlib\b", requirement) for requirement in installed)


@pytest.mark.parametrize("code", BLOCKS, ids=[f"block{i}" for i in range(1, len(BLOCKS) + 1)])
def test_readme_python_block_runs(code, capsys):
    with jax.numpy_dtype_promotion("standard"):  # a reader's session; optax is not strict-safe
        exec(compile(code, str(README), "exec"), {"__name__": "__readme__"})
    assert capsys.readouterr().out  # every example prints its result
