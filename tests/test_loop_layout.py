"""The training loop reads in one screen: no function in bljust/train.py is over 60 lines."""

from __future__ import annotations

import ast
from pathlib import Path

import bljust.train


def test_no_function_in_train_py_is_over_60_lines():
    tree = ast.parse(Path(bljust.train.__file__).read_text())
    long = {n.name: n.end_lineno - n.lineno + 1 for n in ast.walk(tree)
            if isinstance(n, (ast.FunctionDef, ast.AsyncFunctionDef)) and n.end_lineno - n.lineno + 1 > 60}
    assert not long, long
    run = next(n for n in ast.walk(tree) if isinstance(n, ast.FunctionDef) and n.name == "run")
    assert run.end_lineno - run.lineno + 1 <= 60
