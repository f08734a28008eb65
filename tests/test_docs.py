"""Every ```python block in docs/*.md runs, and prints what the page shows under it.

A page's python blocks run in order in one namespace, as a reader would run them in one
session. Where a ```text block follows a python block directly (nothing but blank lines
between), it is that block's printed output and must match exactly, so a page cannot show
numbers the code no longer prints. A block whose fence names a file
(```` ```python title="my_backward.py" ````) is also saved under that name in a temporary
folder on `sys.path`, so a later block can import it as the reader's file. After a
deliberate change, rewrite those output blocks with

    PYTHONPATH=src python tests/test_docs.py
"""

from __future__ import annotations

import contextlib
import io
import re
import sys
import tempfile
from dataclasses import dataclass
from pathlib import Path

import jax
import numpy as np
import pytest

from helpers import same_printout

DOCS = Path(__file__).resolve().parents[1] / "docs"
FENCE = re.compile(r"^```(\w*)([^\n]*)\n(.*?)^```[ \t]*$", re.S | re.M)
TITLE = re.compile(r'title="([\w.]+\.py)"')


@dataclass(frozen=True)
class Block:
    code: str
    line: int  # line of the code's first line in the page, for tracebacks
    output: re.Match[str] | None  # the ```text fence that shows its printed output
    file: str | None = None  # the file name the fence gives the block, if any


def python_blocks(text: str) -> list[Block]:
    fences = list(FENCE.finditer(text))
    blocks = []
    for k, here in enumerate(fences):
        after = fences[k + 1] if k + 1 < len(fences) else None
        if here.group(1) != "python":
            continue
        shows_output = (
            after is not None
            and after.group(1) == "text"
            and not text[here.end() : after.start()].strip()
        )
        line = text.count("\n", 0, here.start(3)) + 1
        title = TITLE.search(here.group(2))
        output = after if shows_output else None
        blocks.append(Block(here.group(3), line, output, title.group(1) if title else None))
    return blocks


def run_page(path: Path) -> list[tuple[Block, str]]:
    """Run a page's python blocks in one namespace; return each block with what it printed.

    The pages switch on float64 and set numpy's print options, as a reader's session
    would; both are restored afterwards so they cannot leak into other tests. They run
    with jax's standard dtype promotion, as a reader's session does (optax's updates
    are not written for the suite's strict promotion).
    """
    x64 = jax.config.read("jax_enable_x64")
    namespace = {"__name__": "__docs__"}
    ran = []
    files = tempfile.TemporaryDirectory()
    sys.path.insert(0, files.name)
    modules = set(sys.modules)
    try:
        with np.printoptions(), jax.numpy_dtype_promotion("standard"):
            for block in python_blocks(path.read_text(encoding="utf-8")):
                if block.file is not None:
                    Path(files.name, block.file).write_text(block.code, encoding="utf-8")
                code = compile(  # not this file's `from __future__` flags: a reader's session
                    "\n" * (block.line - 1) + block.code, str(path), "exec", dont_inherit=True
                )
                out = io.StringIO()
                with contextlib.redirect_stdout(out):
                    exec(code, namespace)
                ran.append((block, out.getvalue()))
    finally:
        jax.config.update("jax_enable_x64", x64)
        sys.path.remove(files.name)
        for name in set(sys.modules) - modules:  # the page's own files, imported from there
            if getattr(sys.modules[name], "__file__", "") and files.name in str(
                sys.modules[name].__file__
            ):
                del sys.modules[name]
        files.cleanup()
    return ran


PAGES = sorted(p for p in DOCS.rglob("*.md") if python_blocks(p.read_text(encoding="utf-8")))


def test_the_tutorial_and_the_guides_have_code_to_run():
    assert {p.name for p in PAGES} >= {"backprop_by_hand.md", "index.md", "course.md"}


def test_same_printout_forgives_the_last_bits_and_nothing_else():
    shown = "Z's mean = 0.5511276474566768\n│ dW2 │ 2×5 │ 7.12e-17 │ PASS │"
    assert same_printout(shown, shown)
    assert same_printout(shown.replace("768", "766").replace("7.12e-17", "7.25e-17"), shown)
    assert not same_printout(shown.replace("0.5511276474566768", "0.55112764746"), shown)
    assert not same_printout(shown.replace("7.12e-17", "7.12e-10"), shown)
    assert not same_printout(shown.replace("PASS", "FAIL"), shown)
    assert not same_printout(shown.replace("2×5", "2×6"), shown)
    assert not same_printout(shown + " 1", shown)


@pytest.mark.parametrize("path", PAGES, ids=[str(p.relative_to(DOCS)) for p in PAGES])
def test_page_runs_and_prints_what_it_shows(path):
    for block, printed in run_page(path):
        if block.output is not None:
            where = f"{path.name}, the block at line {block.line}"
            shown = block.output.group(3)
            assert same_printout(printed, shown), f"{where} printed\n{printed}\nnot\n{shown}"


def update(path: Path) -> bool:
    """Rewrite the output blocks of `path` with what its code prints now."""
    text = path.read_text(encoding="utf-8")
    for block, printed in reversed(run_page(path)):
        if block.output is not None:
            start, end = block.output.span(3)
            text = text[:start] + printed + text[end:]
    changed = text != path.read_text(encoding="utf-8")
    path.write_text(text, encoding="utf-8")
    return changed


if __name__ == "__main__":
    for page in PAGES:
        print(("rewrote " if update(page) else "unchanged ") + str(page.relative_to(DOCS)))
    sys.exit(0)
