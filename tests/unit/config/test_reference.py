"""docs/configuration.md is the user's view of `Settings`: exactly what the code reads."""

from __future__ import annotations

from pathlib import Path

from streams.config.reference import render
from streams.config.settings import Settings

DOC = Path(__file__).resolve().parents[3] / "docs" / "configuration.md"


def test_configuration_doc_is_regenerated_from_settings():
    assert DOC.read_text() == render(), (
        "docs/configuration.md is stale: run `python -m streams.config.reference > "
        "docs/configuration.md`"
    )


def test_every_setting_has_a_row():
    text = render()
    for name in Settings.model_fields:
        assert f"`LOOKOUT_{name.upper()}`" in text
