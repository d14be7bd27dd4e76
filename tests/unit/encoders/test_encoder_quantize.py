"""int8 and bf16 log encoders: the vectors stay those of float32 (cosine >= 0.99 for int8,
>= 0.999 for bf16, on every line of the bench's realistic corpus), each is its own model
(own index), and each refuses where it would be worse or slower."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch
from torch.ao.nn.quantized.dynamic import Linear as DynamicLinear

from encoders.errors import EncoderError, UnknownEncoderSpec
from encoders.log_text import normalise_log
from encoders.quantize import check_cpu_bf16, cpu_has_bf16, cpu_has_vnni, quantize_int8
from encoders.registry import build_encoder
from streams.bench.log_corpus import LogCorpus, distinct_lines

needs_vnni = pytest.mark.skipif(not cpu_has_vnni(), reason="int8 needs a CPU with VNNI")
needs_bf16 = pytest.mark.skipif(not cpu_has_bf16(), reason="bf16 needs a CPU with native bf16")


def corpus_lines() -> list[str]:
    """The bench corpus's templates (as the cache keys them) plus its one-off tail."""
    templates = list(dict.fromkeys(normalise_log(x) for x in LogCorpus(seed=0).lines(2000)))
    return templates + distinct_lines(150, seed=0)


@pytest.mark.slow
@needs_vnni
def test_int8_keeps_every_corpus_line_within_cosine_0_99_of_float32(logs_default) -> None:
    lines = corpus_lines()
    int8 = build_encoder("minilm:int8", "logs", device="cpu")
    cosine = (logs_default.encode(lines) * int8.encode(lines)).sum(dim=-1)
    assert len(lines) > 500
    assert float(cosine.min()) >= 0.99, lines[int(cosine.argmin())]


@needs_vnni
def test_int8_is_its_own_model_so_its_vectors_get_their_own_index(logs_default) -> None:
    int8 = build_encoder("minilm:int8", "logs", device="cpu")
    assert int8.model_id.startswith("minilm-int8@")
    assert int8.model_id != logs_default.model_id
    # the float encoder other users share (the video label bridge) is left in float32
    assert not any(isinstance(m, DynamicLinear) for m in logs_default.embedder.model.modules())
    assert any(isinstance(m, DynamicLinear) for m in int8.embedder.model.modules())


@pytest.mark.slow
@needs_bf16
def test_bf16_keeps_every_corpus_line_within_cosine_0_999_of_float32(logs_default) -> None:
    lines = corpus_lines()
    bf16 = build_encoder("minilm:bf16", "logs", device="cpu")
    cosine = (logs_default.encode(lines) * bf16.encode(lines)).sum(dim=-1)
    assert float(cosine.min()) >= 0.999, lines[int(cosine.argmin())]


@needs_bf16
def test_bf16_is_its_own_model_and_shares_the_float_weights(logs_default) -> None:
    bf16 = build_encoder("minilm:bf16", "logs", device="cpu")
    assert bf16.model_id.startswith("minilm-bf16@")
    assert bf16.model_id.split("@")[1] == logs_default.model_id.split("@")[1]
    assert bf16.embedder.model is logs_default.embedder.model  # no copy, no changed weights
    assert bf16.embedder.autocast == torch.bfloat16 and logs_default.embedder.autocast is None


def test_bf16_is_refused_on_a_gpu_and_on_a_cpu_without_it(monkeypatch, tmp_path: Path) -> None:
    with pytest.raises(EncoderError, match="for CPU inference"):
        check_cpu_bf16(torch.device("cuda"))
    monkeypatch.setattr("encoders.quantize.cpu_has_bf16", lambda: False)
    with pytest.raises(EncoderError, match="native bfloat16"):
        check_cpu_bf16(torch.device("cpu"))
    avx512, amx, without = tmp_path / "a", tmp_path / "b", tmp_path / "c"
    avx512.write_text("flags\t\t: fpu avx2 avx512f avx512_bf16 avx512bw\n")
    amx.write_text("flags\t\t: fpu avx2 amx_bf16 amx_tile\n")
    without.write_text("flags\t\t: fpu avx2 avx512f avx512_vnni\n")
    assert cpu_has_bf16(avx512) is True and cpu_has_bf16(amx) is True
    assert cpu_has_bf16(without) is False


def test_int8_is_refused_on_a_gpu_and_on_a_cpu_without_vnni(monkeypatch) -> None:
    layer = torch.nn.Sequential(torch.nn.Linear(4, 4))
    with pytest.raises(EncoderError, match="for CPU inference"):
        quantize_int8(layer, torch.device("cuda"))
    monkeypatch.setattr("encoders.quantize.cpu_has_vnni", lambda: False)
    with pytest.raises(EncoderError, match="VNNI"):
        quantize_int8(layer, torch.device("cpu"))


def test_vnni_is_read_from_the_cpu_flags(tmp_path: Path) -> None:
    with_vnni, without = tmp_path / "a", tmp_path / "b"
    with_vnni.write_text("flags\t\t: fpu avx2 avx512f avx512_vnni avx512bw\n")
    without.write_text("flags\t\t: fpu avx2 avx512f avx512bw\n")
    assert cpu_has_vnni(with_vnni) is True
    assert cpu_has_vnni(without) is False
    assert cpu_has_vnni(tmp_path / "missing") is False


def test_an_unknown_minilm_variant_is_a_clear_error() -> None:
    with pytest.raises(UnknownEncoderSpec, match="minilm:int8 or minilm:bf16"):
        build_encoder("minilm:int4", "logs", device="cpu")
