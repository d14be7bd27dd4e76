"""Production audio encoder: transformers CLAP (sounds and text in one space)."""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import Any

import torch

from .audio import audio_recipe
from .audio_encoder import AudioEncoder
from .errors import ModelNotAvailable
from .fingerprint import hash_state_dict, model_id
from .runtime import Runtime


def load_clap(name_or_path: str, device: torch.device) -> tuple[Any, Any, str]:
    """ClapModel + ClapProcessor from a hub name or a local save_pretrained() folder."""
    from transformers import ClapModel, ClapProcessor

    local = name_or_path.startswith((".", "/", "~"))
    path = str(Path(name_or_path).expanduser()) if local else name_or_path
    if local and not Path(path).is_dir():
        raise ModelNotAvailable(
            f"CLAP directory {name_or_path!r} does not exist: save one with "
            "ClapModel.save_pretrained(dir) and ClapProcessor.save_pretrained(dir)"
        )
    try:
        model = ClapModel.from_pretrained(path)
        processor = ClapProcessor.from_pretrained(path)
    except Exception as e:  # hub/network/format errors all mean "not available here"
        raise ModelNotAvailable(
            f"cannot load CLAP model {name_or_path!r} ({type(e).__name__}: {str(e)[:200]}). "
            f"Where there is network run `huggingface-cli download {name_or_path}` (fills the "
            "Hugging Face cache) or save it to a folder and use clap:/path/to/folder"
        ) from e
    name = "clap-" + (Path(path).name if local else name_or_path.replace("/", "-"))
    return model.eval().to(device), processor, name


def _pooled(out: Any) -> torch.Tensor:
    """transformers >= 5 returns a model output whose pooler_output is the projection."""
    return out if isinstance(out, torch.Tensor) else out.pooler_output


class ClapEncoder(AudioEncoder):
    """Audio chunks and text through CLAP's two towers."""

    has_text_space = True
    max_batch = 16

    def __init__(self, model: Any, processor: Any, name: str, runtime: Runtime) -> None:
        self.runtime = runtime
        self.model = model
        self.processor = processor
        self.sample_rate = int(processor.feature_extractor.sampling_rate)
        self.dim = int(model.config.projection_dim)
        self.model_id = model_id(name, hash_state_dict(model), audio_recipe(
            self.sample_rate, features={
                k: v for k, v in processor.feature_extractor.to_dict().items()
                if isinstance(v, int | float | str | bool)}))

    def _embed(self, items: Sequence[torch.Tensor]) -> torch.Tensor:
        extractor = self.processor.feature_extractor
        if getattr(extractor, "truncation", "fusion") != "fusion":
            # rand_trunc would crop long chunks at a random offset: crop the start instead
            limit = int(extractor.nb_max_samples)
            items = [w[:limit] for w in items]
        feats = extractor(
            [w.numpy() for w in items], sampling_rate=self.sample_rate, return_tensors="pt"
        )
        inputs = {k: self.runtime.to_device(v) for k, v in feats.items()}
        return _pooled(self.model.get_audio_features(**inputs))

    def _embed_text(self, texts: Sequence[str]) -> torch.Tensor:
        tok = self.processor.tokenizer(
            list(texts), padding=True, truncation=True, return_tensors="pt"
        )
        inputs = {
            k: self.runtime.to_device(v)
            for k, v in tok.items()
            if k in ("input_ids", "attention_mask")
        }
        return _pooled(self.model.get_text_features(**inputs))
