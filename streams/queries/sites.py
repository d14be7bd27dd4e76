"""Sites: which place (zone) each source belongs to, and the place's labels.

`sites.yaml` (or `PUT /sites`) maps source globs to a site:

```yaml
sites:
  lobby: [cam-lobby, mic-lobby, door-*]
  server-room:
    sources: [db-*, mic-server]
    labels: {floor: "2"}
```

Globs have `streams.core.sources` semantics (fnmatch, whole id, case-sensitive). A source
belongs to the FIRST site, in the order given, with a glob that matches it; a source no
glob matches has no site. The map is one record on the compacted query topic (key
`SITES_KEY`, which no query id can take), so it is durable and every worker has the same.
"""

from __future__ import annotations

import re
from functools import cached_property
from pathlib import Path
from typing import Any

from pydantic import BaseModel, ConfigDict, Field, ValidationError, model_validator

from streams.core.errors import QueryValidationError
from streams.core.sources import compile_globs
from streams.queries.model import QUERY_ID_PATTERN, read_yaml, validation_message

#: Key of the site map on the query topic: not a valid query id (ids start [a-z0-9]).
SITES_KEY = "@sites"
MAX_SITES = 10_000


class Site(BaseModel):
    """One place: the sources at it and labels composite queries can group by."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    name: str = Field(..., pattern=QUERY_ID_PATTERN)
    sources: list[str] = Field(..., min_length=1, max_length=1000,
                               description="Source ids or globs (`door-*`).")
    labels: dict[str, str] = Field(default_factory=dict)

    @model_validator(mode="after")
    def _non_empty_globs(self) -> Site:
        if any(not s.strip() for s in self.sources):
            raise ValueError(f"site {self.name!r}: source globs must be non-empty")
        return self


class SiteMap(BaseModel):
    """Every site, in the order their globs are tried."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    sites: list[Site] = Field(default_factory=list, max_length=MAX_SITES)

    @model_validator(mode="before")
    @classmethod
    def _mapping_form(cls, value: Any) -> Any:
        """`sites: {name: [globs]}` or `{name: {sources, labels}}` as well as a list."""
        if isinstance(value, dict) and isinstance(value.get("sites"), dict):
            value = {**value, "sites": [_site_entry(n, v) for n, v in value["sites"].items()]}
        return value

    @model_validator(mode="after")
    def _unique_names(self) -> SiteMap:
        names = [s.name for s in self.sites]
        twice = sorted({n for n in names if names.count(n) > 1})
        if twice:
            raise ValueError(f"site names appear twice: {twice}")
        return self

    @cached_property
    def _patterns(self) -> list[tuple[Site, re.Pattern[str] | None]]:
        return [(s, compile_globs(s.sources)) for s in self.sites]

    def site_of(self, source: str) -> Site | None:
        """The first site with a glob matching `source` (None: no site)."""
        for site, regex in self._patterns:
            if regex is None or regex.match(source) is not None:
                return site
        return None


def _site_entry(name: Any, value: Any) -> Any:
    if isinstance(value, list):
        return {"name": name, "sources": value}
    if isinstance(value, dict):
        return {"name": name, **value}
    return {"name": name, "sources": value}


def parse_sites(data: Any, origin: str = "sites") -> SiteMap:
    """Validate a site map body or document; errors name the field to fix."""
    if data is None:
        return SiteMap()
    try:
        return SiteMap.model_validate(data)
    except ValidationError as e:
        raise QueryValidationError(validation_message(e, origin)) from e


def load_sites_file(path: str | Path) -> SiteMap:
    """Read `sites.yaml`."""
    doc = read_yaml(path)
    if doc is not None and not isinstance(doc, dict):
        raise QueryValidationError(f"{path}: expected 'sites:' with a mapping of site names")
    return parse_sites(doc, f"sites in {path}")


def group_of(group_by: str, source: str, sites: SiteMap) -> str | None:
    """The group a source's hits count in for `group_by` (site, source, label:NAME);
    None when the source has no site (or its site lacks the label)."""
    if group_by == "source":
        return source
    site = sites.site_of(source)
    if site is None:
        return None
    if group_by == "site":
        return site.name
    return site.labels.get(group_by.removeprefix("label:"))
