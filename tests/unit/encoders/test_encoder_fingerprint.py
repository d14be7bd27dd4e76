"""A model id covers the preprocessing as well as the weights: the same weights behind
another front end (sample rate, image size, log masks) make vectors of another space, so
they must get another index."""

from __future__ import annotations

import re

import pytest

from encoders import log_text
from encoders.fingerprint import model_id, recipe_hash
from encoders.image import ImagePreprocess
from encoders.registry import build_encoder


def test_the_recipe_is_part_of_the_model_id():
    a = model_id("clip", "abcd1234", {"size": 224, "mode": "center_crop"})
    assert a.startswith("clip@abcd1234-p")
    assert a == model_id("clip", "abcd1234", {"mode": "center_crop", "size": 224})  # key order
    assert a != model_id("clip", "abcd1234", {"size": 256, "mode": "center_crop"})
    assert model_id("null-logs", "v1") == "null-logs@v1"  # no recipe, no suffix


def test_image_preprocessing_changes_the_id():
    squash, crop = ImagePreprocess(size=224), ImagePreprocess(size=224, mode="center_crop")
    assert recipe_hash(squash.recipe()) != recipe_hash(crop.recipe())
    assert recipe_hash(squash.recipe()) != recipe_hash(ImagePreprocess(size=256).recipe())


def test_changing_a_log_mask_changes_the_log_encoders_id(monkeypatch: pytest.MonkeyPatch):
    before = build_encoder("trivial", "logs", device="cpu").model_id
    masks = (*log_text._MASKS, (re.compile(r"\bpid=\d+"), "pid=<n>"))
    monkeypatch.setattr(log_text, "_MASKS", masks)
    after = build_encoder("trivial", "logs", device="cpu").model_id
    assert before != after and before.split("-p")[0] == after.split("-p")[0]


@pytest.mark.parametrize("modality", ["video", "audio", "logs"])
def test_every_trivial_encoder_declares_its_recipe(modality: str):
    enc = build_encoder("trivial", modality, device="cpu")
    assert re.fullmatch(rf"trivial-{modality}@v1-p[0-9a-f]{{6}}", enc.model_id)
    assert enc.model_id == build_encoder("trivial", modality, device="cpu").model_id
