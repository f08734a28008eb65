"""Where a user's function failed, in one line: shared by the dense and the layer checks."""

from __future__ import annotations

import traceback
from collections.abc import Callable
from pathlib import Path
from typing import Any


def exception_line(err: BaseException, func: Callable[..., Any]) -> tuple[str, str | None]:
    """(`ValueError: … (file.py, line 12: dW = …)`, that line's source), at the deepest frame
    in `func`'s own file (else the deepest frame); the source is None when no frame has one."""
    frames = traceback.extract_tb(err.__traceback__)
    code = getattr(func, "__code__", None)
    own = [fr for fr in frames if code is not None and fr.filename == code.co_filename]
    where = (own or frames[-1:] or [None])[-1]
    text = f"{type(err).__name__}: {err}"
    if where is None:
        return text, None
    return f"{text} ({Path(where.filename).name}, line {where.lineno}: {where.line})", where.line
