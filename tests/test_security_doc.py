"""SECURITY.md names the test behind each protection: every name must exist."""

from __future__ import annotations

import ast
import re
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
REFERENCE = re.compile(r"`(tests/[\w/]+\.py)?::(test_\w+)`")


def test_every_test_named_in_security_md_exists() -> None:
    text = (ROOT / "SECURITY.md").read_text()
    current_file = None
    named = []
    for file, test in REFERENCE.findall(text):
        current_file = file or current_file  # "::name" continues the file named before it
        assert current_file, f"::{test} comes before any file name"
        named.append((current_file, test))
    assert len(named) >= 40
    missing = []
    for file, test in named:
        tree = ast.parse((ROOT / file).read_text())
        functions = {n.name for n in ast.walk(tree) if isinstance(n, ast.FunctionDef)}
        if test not in functions:
            missing.append(f"{file}::{test}")
    assert not missing, missing
