"""Helpers every CLI module shares: settings loading and output in text or JSON."""

from __future__ import annotations

import json
from typing import Any

from pydantic import ValidationError

from streams.config.settings import Settings
from streams.core.errors import ConfigError


def load_settings(**overrides: Any) -> Settings:
    """Read settings once; a bad value becomes one readable line instead of a traceback."""
    try:
        return Settings(**{k: v for k, v in overrides.items() if v is not None})
    except ValidationError as exc:
        first = exc.errors()[0]
        field = ".".join(str(p) for p in first["loc"]) or "settings"
        raise ConfigError(
            f"invalid setting {field} (LOOKOUT_{field.upper()}): {first['msg']}"
        ) from exc


def print_json(data: Any) -> None:
    print(json.dumps(data, indent=2, sort_keys=True, default=str))


def evidence_label(evidence: dict[str, Any], key: str) -> str:
    """What a table shows as an item's evidence: its log text, thumbnail URL, else its key."""
    return evidence.get("text") or evidence.get("thumb_url") or key
