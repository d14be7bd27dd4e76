"""The bundled MiniLM in plain torch (`encoders.minilm`) is the model sentence-transformers
loads from the same folder: same token ids, same vectors, same weights hash (so the same
model id and indexes), and loading it imports neither sentence-transformers nor the stacks
it drags in (the seconds a worker start used to spend)."""

from __future__ import annotations

import json
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
import torch

from encoders.errors import ModelNotAvailable
from encoders.log_text import normalise_log
from encoders.minilm import load_minilm
from encoders.sentence import bundled_minilm_path, load_sentence_transformer
from streams.bench.log_corpus import LogCorpus, distinct_lines

EDGE_CASES = [
    "", "   ", "  leading and trailing  ", "word " * 400,  # past max_seq_length: truncated
    "Ünïcödé 日本語 emoji 🎉", "\ttab\nnewline", "[CLS] [SEP] [PAD] [MASK]",
]


@pytest.fixture(scope="module")
def both():
    """(plain torch, sentence-transformers) on CPU, from the bundled folder."""
    folder = bundled_minilm_path()
    return (load_minilm(folder, torch.device("cpu")),
            load_sentence_transformer(str(folder), torch.device("cpu")))


def _lines() -> list[str]:
    templates = list(dict.fromkeys(normalise_log(x) for x in LogCorpus(seed=0).lines(600)))
    return templates + distinct_lines(60, seed=0) + EDGE_CASES


@pytest.mark.slow
def test_plain_torch_minilm_gives_sentence_transformers_tokens_vectors_and_hash(both) -> None:
    from encoders.fingerprint import hash_state_dict

    native, st = both
    lines = _lines()
    ours = [e.ids for e in native.tokenizer.encode_batch(lines)]
    theirs = st.tokenize(lines)
    for i, ids in enumerate(ours):
        n = int(theirs["attention_mask"][i].sum())
        assert ids == theirs["input_ids"][i, :n].tolist(), lines[i]
    with torch.inference_mode():
        a = native(lines, batch_size=32)
        b = st.encode(lines, batch_size=32, convert_to_tensor=True, normalize_embeddings=False,
                      show_progress_bar=False)
    assert a.shape == b.shape == (len(lines), 384)
    assert float((a - b).abs().max()) < 1e-5
    assert native.weights_hash == hash_state_dict(st)


def test_batching_does_not_change_a_line_s_vector() -> None:
    native = load_minilm(bundled_minilm_path(), torch.device("cpu"))
    lines = ["disk full on /dev/sda1", "x", "a much longer line " * 10, ""]
    with torch.inference_mode():
        whole = native(lines, batch_size=256)
        one_by_one = torch.cat([native([t], batch_size=1) for t in lines])
    assert torch.allclose(whole, one_by_one, atol=1e-5)
    assert torch.allclose(whole.norm(dim=-1), torch.ones(len(lines)), atol=1e-5)
    assert native([], batch_size=8).shape == (0, 384)


def test_loading_the_default_imports_no_sentence_transformers() -> None:
    code = ("import sys, torch; from encoders.registry import build_encoder; "
            "e = build_encoder('minilm', 'logs', device='cpu'); e.encode(['disk full']); "
            "print(sorted(m for m in ('sentence_transformers', 'transformers', 'sklearn', "
            "'torchvision', 'torch._dynamo') if m in sys.modules))")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                         timeout=300, check=True)
    assert out.stdout.strip().splitlines()[-1] == "[]", out.stderr[-2000:]


def test_a_folder_that_is_not_bert_plus_mean_pooling_is_refused(tmp_path: Path) -> None:
    folder = tmp_path / "model"
    shutil.copytree(bundled_minilm_path(), folder)
    pooling = folder / "1_Pooling" / "config.json"
    cfg = json.loads(pooling.read_text()) | {"pooling_mode_mean_tokens": False,
                                             "pooling_mode_cls_token": True}
    pooling.write_text(json.dumps(cfg))
    with pytest.raises(ModelNotAvailable, match="not BERT \\+ mean pooling"):
        load_minilm(folder, torch.device("cpu"))
