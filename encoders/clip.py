"""Production video encoder: an open_clip CLIP model (frames and text in one space)."""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np
import torch

from .errors import ModelNotAvailable
from .fingerprint import hash_state_dict, model_id
from .image import ImagePreprocess
from .image_encoder import ImageEncoder
from .runtime import Runtime

_SCHEMAS = ("local-dir:", "hf-hub:")


def _looks_like_path(value: str) -> bool:
    return value.startswith((".", "/", "~")) or value.endswith(
        (".bin", ".pt", ".pth", ".safetensors")
    )


def load_open_clip(target: str, device: torch.device) -> tuple[Any, Any, ImagePreprocess, str]:
    """`<arch>:<tag-or-checkpoint>`, `local-dir:<dir>` or `hf-hub:<org/repo>` -> model, tokenizer,
    preprocessing (taken from the checkpoint's own config) and a display name."""
    import open_clip

    if target.startswith(_SCHEMAS):
        model_name, pretrained, name = target, None, target.split(":", 1)[1].rstrip("/")
        name = "open_clip-" + Path(name).name
        if target.startswith("local-dir:") and not Path(target[10:]).expanduser().is_dir():
            raise ModelNotAvailable(
                f"open_clip directory {target[10:]!r} does not exist: it must hold "
                "open_clip_config.json and open_clip_pytorch_model.bin (or .safetensors)"
            )
    else:
        arch, _, pretrained = target.partition(":")
        if not arch or not pretrained:
            raise ModelNotAvailable(
                f"open_clip spec needs an architecture and weights: open_clip:<arch>:<tag or "
                f"checkpoint path>, e.g. open_clip:ViT-B-32:laion2b_s34b_b79k (got {target!r})"
            )
        if _looks_like_path(pretrained):
            pretrained = str(Path(pretrained).expanduser())
            if not Path(pretrained).is_file():
                raise ModelNotAvailable(
                    f"open_clip checkpoint {pretrained!r} does not exist: download the weights "
                    f"for {arch} and give their path, or use a pretrained tag"
                )
            name = f"open_clip-{arch}-{Path(pretrained).stem}"
        else:
            name = f"open_clip-{arch}-{pretrained}"
        model_name = arch
    try:
        model, _, _ = open_clip.create_model_and_transforms(
            model_name, pretrained=pretrained, device=device
        )
        tokenizer = open_clip.get_tokenizer(model_name)
    except Exception as e:  # download, config and checkpoint errors all mean "not here"
        raise ModelNotAvailable(
            f"cannot load open_clip model {target!r} ({type(e).__name__}: {str(e)[:200]}). "
            'Where there is network run `python -c "import open_clip; '
            f"open_clip.create_model_and_transforms('{model_name}', pretrained='{pretrained}')\"` "
            "to fill the Hugging Face cache, or download the checkpoint and use "
            "open_clip:<arch>:/path/to/open_clip_pytorch_model.bin or open_clip:local-dir:/path"
        ) from e
    cfg = getattr(model.visual, "preprocess_cfg", {}) or {}
    size = cfg.get("size", getattr(model.visual, "image_size", 224))
    size = size[0] if isinstance(size, list | tuple) else size
    preprocess = ImagePreprocess(
        size=int(size),
        mean=tuple(cfg.get("mean", (0.48145466, 0.4578275, 0.40821073))),
        std=tuple(cfg.get("std", (0.26862954, 0.26130258, 0.27577711))),
        mode="center_crop",
    )
    return model.eval(), tokenizer, preprocess, name


class OpenClipEncoder(ImageEncoder):
    """Frames and text through CLIP's two towers; cosine of the two is CLIP's similarity."""

    modality = "video"
    has_text_space = True
    max_batch = 64

    def __init__(
        self, model: Any, tokenizer: Any, preprocess: ImagePreprocess, name: str, runtime: Runtime
    ) -> None:
        self.runtime = runtime
        self.model = model
        self.tokenizer = tokenizer
        self.preprocess = preprocess
        self._image_tower = runtime.maybe_compile(model.visual)
        self.dim = (
            int(model.text_projection.shape[1])
            if hasattr(model, "text_projection") and model.text_projection is not None
            else int(model.visual.output_dim)
        )
        self.model_id = model_id(name, hash_state_dict(model), preprocess.recipe())

    def _embed(self, items: Sequence[np.ndarray | torch.Tensor]) -> torch.Tensor:
        return self._image_tower(self.preprocess(items, self.device))

    def _embed_text(self, texts: Sequence[str]) -> torch.Tensor:
        tokens = self.runtime.to_device(self.tokenizer(list(texts)))
        return self.model.encode_text(tokens)
