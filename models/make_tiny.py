"""Makes models/tiny-bert-cls: a tiny random BertForSequenceClassification checkpoint (2 layers,
hidden 32, 4 heads, FFN 64, 3 labels, `bert.` prefixed names, pooler + classifier) with a small
English vocabulary, for fast tests that need no fetched model. Deterministic (seed 7).

    python3 models/make_tiny.py models/tiny-bert-cls
"""
import json
import sys
from pathlib import Path

import numpy as np
from safetensors.numpy import save_file

WORDS = """the a an of to and in is was for on that with as it by at from this be are have
has not but or they he she we you i his her their its will would can could should new
market shares fell rose profit bank rates film music award game team match won lost goal
phone chip software internet government minister election vote police court said year
good bad great terrible happy sad love hate best worst un ##aff ##able ##s ##ed ##ing ##ly
. , ! ? ' " - ( ) : ; 1 2 3 0 é 中 ##a ##b ##c""".split()


def main(out):
    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    vocab = ["[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]"]
    vocab += [w for i, w in enumerate(WORDS) if w not in WORDS[:i]]
    vocab += [c for c in "abcdefghijklmnopqrstuvwxyz" if c not in vocab]
    vocab += ["##" + c for c in "defghijklmnopqrstuvwxyz"]
    (out / "vocab.txt").write_text("\n".join(vocab) + "\n")
    rng = np.random.default_rng(7)
    h, layers, heads, ffn, labels = 32, 2, 4, 64, 3
    t = {}

    def lin(name, o, i):
        t[name + ".weight"] = (rng.standard_normal((o, i)) * 0.2).astype(np.float32)
        t[name + ".bias"] = (rng.standard_normal(o) * 0.05).astype(np.float32)

    def ln(name):
        t[name + ".weight"] = (1 + rng.standard_normal(h) * 0.1).astype(np.float32)
        t[name + ".bias"] = (rng.standard_normal(h) * 0.1).astype(np.float32)

    t["bert.embeddings.word_embeddings.weight"] = (rng.standard_normal((len(vocab), h)) * 0.5).astype(np.float32)
    t["bert.embeddings.position_embeddings.weight"] = (rng.standard_normal((64, h)) * 0.1).astype(np.float32)
    t["bert.embeddings.token_type_embeddings.weight"] = (rng.standard_normal((2, h)) * 0.1).astype(np.float32)
    ln("bert.embeddings.LayerNorm")
    for i in range(layers):
        p = f"bert.encoder.layer.{i}"
        for n in ("query", "key", "value"):
            lin(f"{p}.attention.self.{n}", h, h)
        lin(f"{p}.attention.output.dense", h, h)
        ln(f"{p}.attention.output.LayerNorm")
        lin(f"{p}.intermediate.dense", ffn, h)
        lin(f"{p}.output.dense", h, ffn)
        ln(f"{p}.output.LayerNorm")
    lin("bert.pooler.dense", h, h)
    lin("classifier", labels, h)
    save_file(t, str(out / "model.safetensors"))
    config = {
        "architectures": ["BertForSequenceClassification"],
        "model_type": "bert",
        "hidden_size": h,
        "num_hidden_layers": layers,
        "num_attention_heads": heads,
        "intermediate_size": ffn,
        "hidden_act": "gelu",
        "max_position_embeddings": 64,
        "type_vocab_size": 2,
        "vocab_size": len(vocab),
        "layer_norm_eps": 1e-12,
        "id2label": {"0": "negative", "1": "neutral", "2": "positive"},
        "label2id": {"negative": 0, "neutral": 1, "positive": 2},
        "problem_type": "single_label_classification",
    }
    (out / "config.json").write_text(json.dumps(config, indent=2))
    (out / "tokenizer_config.json").write_text(json.dumps({"do_lower_case": True, "model_max_length": 64}))
    from tokenizers import BertWordPieceTokenizer

    tok = BertWordPieceTokenizer(str(out / "vocab.txt"), lowercase=True)
    tok.save(str(out / "tokenizer.json"))
    print(f"tiny checkpoint -> {out}", file=sys.stderr)


if __name__ == "__main__":
    main(sys.argv[1])
