"""Renders docs/configuration.md from `Settings`, so the reference cannot drift from the code.

`python -m streams.config.reference > docs/configuration.md` regenerates it; a unit test
fails when the committed file differs.
"""

from __future__ import annotations

from pydantic.fields import FieldInfo

from streams.config.settings import Settings

HEADER = """# Configuration

Lookout reads `LOOKOUT_*` environment variables, then an optional `lookout.toml` in the
working directory (same names, lower case, without the prefix). Settings are read once by
the command you run and passed down. When `LOOKOUT_KAFKA_BOOTSTRAP` / `LOOKOUT_REDIS_URL`
are unset, every command uses the embedded stack of `LOOKOUT_HOME` (`lookout stack up`).

This page is generated from `streams/config/settings.py` by
`python -m streams.config.reference`; do not edit it by hand.

| variable | default | meaning |
|---|---|---|
"""


def _default(info: FieldInfo) -> str:
    if info.default_factory is not None:  # pragma: no cover - no factories today
        return "(computed)"
    value = info.default
    if value is None:
        return "unset"
    return f"`{value}`"


def _meaning(info: FieldInfo) -> str:
    text = info.description or ""
    bounds = [
        f"{name} {getattr(m, name)}"
        for m in info.metadata
        for name in ("ge", "gt", "le", "lt", "pattern")
        if getattr(m, name, None) is not None
    ]
    if bounds:
        text = f"{text} ({', '.join(bounds)})".strip()
    return text.replace("|", "\\|")


def render() -> str:
    rows = [
        f"| `LOOKOUT_{name.upper()}` | {_default(info)} | {_meaning(info)} |"
        for name, info in Settings.model_fields.items()
    ]
    return HEADER + "\n".join(rows) + "\n"


if __name__ == "__main__":
    print(render(), end="")
