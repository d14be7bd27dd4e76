"""docs/configuration.md is the user's view of `Settings`: exactly what the code reads."""

from __future__ import annotations

from pathlib import Path

from streams.settings import Settings
from streams.settings_reference import render

DOC = Path(__file__).resolve().parents[2] / "docs" / "configuration.md"


def test_configuration_doc_is_regenerated_from_settings():
    assert DOC.read_text() == render(), (
        "docs/configuration.md is stale: run `python -m streams.settings_reference > "
        "docs/configuration.md`"
    )


def test_every_setting_has_a_row():
    text = render()
    for name in Settings.model_fields:
        assert f"`LOOKOUT_{name.upper()}`" in text
