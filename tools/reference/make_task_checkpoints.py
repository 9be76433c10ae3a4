"""Makes BERT task checkpoints in Hugging Face's exact layout from the real all-MiniLM-L6-v2:
its encoder, vocabulary and tokenizer, plus task heads with seeded pseudo-random weights (no
fine-tuned MLM / NER / QA checkpoint can be fetched here). Each folder is what
`save_pretrained` writes: config.json (`architectures`, `id2label`), model.safetensors with
`bert.`-prefixed encoder tensors and the head tensors under HF's names, and the tokenizer files.

    python3 make_task_checkpoints.py models/all-MiniLM-L6-v2 OUT_DIR

Writes OUT_DIR/minilm-pretraining (BertForPreTraining: cls.predictions + cls.seq_relationship),
minilm-ner (BertForTokenClassification, CoNLL BIO tags), minilm-qa (BertForQuestionAnswering),
minilm-choice (BertForMultipleChoice). The weights come from a fixed integer hash, not numpy's
generator, so they are the same on every machine and numpy version.
"""
import json
import shutil
import sys
from pathlib import Path

import numpy as np
from safetensors.numpy import load_file, save_file

NER_TAGS = ["O", "B-MISC", "I-MISC", "B-PER", "I-PER", "B-ORG", "I-ORG", "B-LOC", "I-LOC"]


def weights(shape, seed, scale):
    """Deterministic values uniform in [-scale, scale) from a 32-bit multiplicative hash."""
    n = int(np.prod(shape))
    i = np.arange(n, dtype=np.uint64)
    h = (i * np.uint64(2654435761) + np.uint64(seed) * np.uint64(40503)) % np.uint64(1 << 32)
    h = (h ^ (h >> np.uint64(15))) * np.uint64(2246822519) % np.uint64(1 << 32)
    h = h ^ (h >> np.uint64(13))
    u = h.astype(np.float64) / float(1 << 32)
    return ((u * 2 - 1) * scale).astype(np.float32).reshape(shape)


def linear(name, out, inp, seed, scale):
    return {
        f"{name}.weight": weights((out, inp), seed, scale),
        f"{name}.bias": weights((out,), seed + 1, scale / 4),
    }


def make(src, out, name, architecture, heads, extra_config=None):
    d = out / name
    d.mkdir(parents=True, exist_ok=True)
    base = load_file(str(src / "model.safetensors"))
    tensors = {f"bert.{k}": v for k, v in base.items() if k != "embeddings.position_ids"}
    tensors.update(heads)
    save_file(tensors, str(d / "model.safetensors"), metadata={"format": "pt"})
    config = json.loads((src / "config.json").read_text())
    config["architectures"] = [architecture]
    config.update(extra_config or {})
    (d / "config.json").write_text(json.dumps(config, indent=2) + "\n")
    for f in ["tokenizer.json", "tokenizer_config.json", "vocab.txt", "special_tokens_map.json"]:
        shutil.copy(src / f, d / f)


def main():
    src, out = Path(sys.argv[1]), Path(sys.argv[2])
    config = json.loads((src / "config.json").read_text())
    h, v = config["hidden_size"], config["vocab_size"]
    s = 1 / np.sqrt(h)  # weights of unit-variance outputs for unit-variance inputs
    pretraining = {
        **linear("cls.predictions.transform.dense", h, h, 11, 3 * s),
        "cls.predictions.transform.LayerNorm.weight": 1 + weights((h,), 13, 0.2),
        "cls.predictions.transform.LayerNorm.bias": weights((h,), 14, 0.2),
        "cls.predictions.bias": weights((v,), 15, 1.0),
        **linear("cls.seq_relationship", 2, h, 17, 3 * s),
    }
    make(src, out, "minilm-pretraining", "BertForPreTraining", pretraining)
    tags = {str(i): t for i, t in enumerate(NER_TAGS)}
    ner = linear("classifier", len(NER_TAGS), h, 21, 3 * s)
    make(src, out, "minilm-ner", "BertForTokenClassification", ner,
         {"id2label": tags, "label2id": {t: i for i, t in enumerate(NER_TAGS)}})
    make(src, out, "minilm-qa", "BertForQuestionAnswering", linear("qa_outputs", 2, h, 31, 3 * s))
    make(src, out, "minilm-choice", "BertForMultipleChoice", linear("classifier", 1, h, 41, 3 * s))


if __name__ == "__main__":
    main()
