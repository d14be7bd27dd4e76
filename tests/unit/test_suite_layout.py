"""The test suite can be collected as a whole: test modules live in folders without
`__init__.py`, so two modules with one file name (tests/unit/x/test_a.py and
tests/integration/test_a.py) make pytest refuse to collect anything."""

from __future__ import annotations

from collections import Counter
from pathlib import Path

TESTS = Path(__file__).resolve().parents[1]


def test_every_test_module_name_is_unique() -> None:
    names = Counter(p.name for p in TESTS.rglob("test_*.py"))
    assert [n for n, c in names.items() if c > 1] == []
