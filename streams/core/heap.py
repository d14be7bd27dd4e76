"""Keeping the cyclic garbage collector off the objects a worker keeps for its whole life.

Measured at 50 log lines/s on the 2-core box (docs/deploy.md): a full (generation 2)
collection walked the start-up heap (torch, Faust, the models) in 180-220 ms every ~20 s,
holding the GIL, and those were the steady state's slowest alerts (190-310 ms ingest ->
alert); four more full passes of 32-160 ms ran during the imports. Frozen, a full
collection walks only what came after start-up (9-20 ms).
"""

from __future__ import annotations

import contextlib
import gc
from collections.abc import Iterator


@contextlib.contextmanager
def imported_for_good() -> Iterator[None]:
    """Run the imports in the block without the collector, then freeze what they made:
    modules live as long as the process. The collector comes back even if one fails."""
    gc.disable()
    try:
        yield
    finally:
        gc.freeze()
        gc.enable()


def freeze_startup_heap() -> None:
    """Collect once (start-up's garbage must not be frozen with it), then freeze the rest."""
    gc.collect()
    gc.freeze()
