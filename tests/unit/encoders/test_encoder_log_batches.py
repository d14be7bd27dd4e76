"""Length-bucketed log batches: sorting by token count and batching short lines together
must not change a vector (padding is masked out) nor the order vectors come back in, on
both text paths: the bundled MiniLM run in plain torch (`minilm`) and a SentenceTransformer
(`sentence-transformers:` specs).

The reference is each line embedded alone: no padding at all, so the vector a line must
have whatever it is batched with. (One batch padded to the longest line, the path before
buckets, cost ~20 s of the suite per path: 164 lines x 256 positions on one thread.)"""

from __future__ import annotations

import pytest
import torch

from encoders.log_text import normalise_log
from encoders.sentence import SentenceEmbedder, bundled_minilm_path, load_sentence_transformer
from streams.bench.log_corpus import LogCorpus, distinct_lines


def mixed_length_lines() -> list[str]:
    """Corpus templates, one-off lines and a few long ones, shuffled so buckets interleave."""
    templates = list(dict.fromkeys(normalise_log(x) for x in LogCorpus(seed=1).lines(1500)))
    long_lines = [" ".join(["stack frame at worker.handle line"] * k) for k in (8, 20, 60)]
    # ~5 buckets: enough to interleave
    lines = templates[:120] + distinct_lines(40, seed=1) + long_lines + ["ok"]
    order = torch.randperm(len(lines), generator=torch.Generator().manual_seed(0)).tolist()
    return [lines[i] for i in order]


@pytest.mark.slow
def test_bucketed_minilm_vectors_are_those_of_each_line_alone_in_input_order(
        logs_default) -> None:
    lines = mixed_length_lines()
    embedder = logs_default.embedder
    assert len(lines) > 4 * embedder.bucket
    with torch.inference_mode():
        alone = torch.cat([embedder([line], 1) for line in lines])
        after = embedder(lines, 256)
    cosine = torch.nn.functional.cosine_similarity(alone, after)
    assert after.shape == alone.shape
    assert float(cosine.min()) >= 0.9999, lines[int(cosine.argmin())]


@pytest.mark.slow
def test_bucketed_sentence_transformer_vectors_are_those_of_each_line_alone() -> None:
    embedder = SentenceEmbedder(load_sentence_transformer(str(bundled_minilm_path()),
                                                          torch.device("cpu")))
    lines = mixed_length_lines()
    assert len(lines) > 4 * embedder.bucket
    with torch.inference_mode():
        alone = embedder.model.encode(lines, batch_size=1, convert_to_tensor=True)
        after = embedder(lines, 256)
    cosine = torch.nn.functional.cosine_similarity(alone, after)
    assert after.shape == alone.shape
    assert float(cosine.min()) >= 0.9999, lines[int(cosine.argmin())]


def test_a_batch_within_one_bucket_is_one_call_and_an_empty_one_is_empty(logs_default) -> None:
    embedder = logs_default.embedder
    with torch.inference_mode():
        one = embedder(["disk <num> full on node <ip>"], 256)
        assert one.shape == (1, embedder.dim) and one.dtype == torch.float32
        assert embedder([], 256).shape[0] == 0
