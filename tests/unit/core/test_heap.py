"""The worker keeps the cyclic collector off the objects that live as long as the process
(`streams.core.heap`): its imports run without collections and are frozen after, and so is
everything start-up made once the worker is ready. A full collection
then walks only what came later: at 50 log lines/s it took 180-220 ms every ~20 s before,
and those were the slowest alerts (docs/deploy.md)."""

from __future__ import annotations

import gc
import weakref
from collections.abc import Iterator

import pytest

from streams.core.heap import freeze_startup_heap, imported_for_good


@pytest.fixture(autouse=True)
def _unfrozen() -> Iterator[None]:
    yield
    gc.unfreeze()
    gc.enable()


def _seen_by_the_collector(obj: object) -> bool:
    return any(o is obj for o in gc.get_objects())


class Node:
    def __init__(self) -> None:
        self.me = self  # a reference cycle: only the cyclic collector frees it


def test_imports_run_without_collections_and_what_they_made_is_frozen() -> None:
    with imported_for_good():
        assert not gc.isenabled()
        module_state = Node()
    assert gc.isenabled()
    assert gc.is_tracked(module_state) and not _seen_by_the_collector(module_state)


def test_the_collector_comes_back_when_an_import_fails() -> None:
    with pytest.raises(ImportError), imported_for_good():
        import lookout_no_such_module  # noqa: F401
    assert gc.isenabled()


def test_start_up_garbage_is_freed_and_the_living_frozen() -> None:
    gc.disable()  # only freeze_startup_heap may collect here
    garbage, living = Node(), Node()
    gone = weakref.ref(garbage)
    del garbage
    freeze_startup_heap()
    assert gone() is None  # collected, not frozen for the life of the process
    assert not _seen_by_the_collector(living)
