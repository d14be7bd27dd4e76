"""Source globs: one matcher and one meaning for live matching, preview, search and alerts.

A source filter is a list of globs with `fnmatch` syntax (`*` any run, `?` one character,
`[...]` a class) matched against the WHOLE source id, case-sensitively: `cam-*` matches
`cam-lobby`, not `CAM-lobby`. An empty list, or one containing `*`, matches every source.

Redis TAG filters are case-insensitive and know no `?`/`[...]`, so `redis_prefilter` only
narrows a search (a superset of the answer) and callers always finish with `matches`.
"""

from __future__ import annotations

import fnmatch
import re
from collections.abc import Sequence


def compile_globs(globs: Sequence[str] | None) -> re.Pattern[str] | None:
    """One regex for a glob list; None means "every source"."""
    if not globs or "*" in globs:
        return None
    return re.compile("|".join(f"(?:{fnmatch.translate(g)})" for g in globs))


def matches(source: str, globs: Sequence[str] | None) -> bool:
    """Whether `source` is one of `globs` (see the module docstring for the rules)."""
    regex = compile_globs(globs)
    return regex is None or regex.match(source) is not None


def redis_prefilter(globs: Sequence[str] | None) -> list[str] | None:
    """Globs a Redis TAG query can pre-filter on (ids and `*` wildcards); None = no
    pre-filter. The result may hold more than `globs` match (case); never fewer."""
    if not globs or "*" in globs:
        return None
    if any(ch in g for g in globs for ch in "?[]"):
        return None
    return list(globs)
