"""Independent references for the tests: HF `tokenizers` token ids and a numpy fp32 forward
pass of a BERT checkpoint (safetensors), with the sentence-transformers pooling.

    python3 reference.py tokens MODEL_DIR < texts.jsonl > tokens.jsonl
    python3 reference.py embed  MODEL_DIR < texts.jsonl > embeddings.jsonl
    python3 reference.py hidden MODEL_DIR < texts.jsonl   # last hidden state per token
    python3 reference.py layers MODEL_DIR < texts.jsonl   # every layer's output per token

Input lines are JSON strings (so any text, control characters included, fits on a line).
The forward pass is float64 numpy, written from the BERT paper / HF modeling_bert, sharing no
code with bertlite.
"""
import json
import math
import sys
from pathlib import Path

import numpy as np


def load_tokenizer(model_dir, max_len=None):
    from tokenizers import Tokenizer

    tok = Tokenizer.from_file(str(Path(model_dir) / "tokenizer.json"))
    tok.no_padding()
    if max_len is None:
        cfg = Path(model_dir) / "sentence_bert_config.json"
        max_len = json.loads(cfg.read_text())["max_seq_length"] if cfg.exists() else 512
    tok.enable_truncation(max_len)
    return tok


def tokens(model_dir, texts, max_len=None):
    tok = load_tokenizer(model_dir, max_len)
    for t in texts:
        if isinstance(t, list):
            e = tok.encode(t[0], t[1])
        else:
            e = tok.encode(t)
        yield {"ids": e.ids, "type_ids": e.type_ids, "tokens": e.tokens, "offsets": e.offsets}


def erf(x):
    return np.vectorize(math.erf)(x)


class Bert:
    def __init__(self, model_dir):
        from safetensors.numpy import load_file

        d = Path(model_dir)
        self.cfg = json.loads((d / "config.json").read_text())
        w = load_file(str(d / "model.safetensors"))
        self.w = {k.removeprefix("bert."): v.astype(np.float64) for k, v in w.items()}
        self.heads = self.cfg["num_attention_heads"]
        self.eps = self.cfg.get("layer_norm_eps", 1e-12)

    def ln(self, x, name):
        mu = x.mean(-1, keepdims=True)
        var = ((x - mu) ** 2).mean(-1, keepdims=True)
        return (x - mu) / np.sqrt(var + self.eps) * self.w[name + ".weight"] + self.w[name + ".bias"]

    def lin(self, x, name):
        return x @ self.w[name + ".weight"].T + self.w[name + ".bias"]

    def forward(self, ids, type_ids, layers=None):
        """The last hidden state; every layer's output is appended to `layers` if given."""
        w = self.w
        n = len(ids)
        x = w["embeddings.word_embeddings.weight"][ids] + w["embeddings.position_embeddings.weight"][:n]
        x = x + w["embeddings.token_type_embeddings.weight"][type_ids]
        x = self.ln(x, "embeddings.LayerNorm")
        h = self.heads
        dh = x.shape[-1] // h
        for i in range(self.cfg["num_hidden_layers"]):
            p = f"encoder.layer.{i}"
            q = self.lin(x, p + ".attention.self.query").reshape(n, h, dh).transpose(1, 0, 2)
            k = self.lin(x, p + ".attention.self.key").reshape(n, h, dh).transpose(1, 0, 2)
            v = self.lin(x, p + ".attention.self.value").reshape(n, h, dh).transpose(1, 0, 2)
            s = q @ k.transpose(0, 2, 1) / math.sqrt(dh)
            s = np.exp(s - s.max(-1, keepdims=True))
            s = s / s.sum(-1, keepdims=True)
            c = (s @ v).transpose(1, 0, 2).reshape(n, h * dh)
            x = self.ln(self.lin(c, p + ".attention.output.dense") + x, p + ".attention.output.LayerNorm")
            f = self.lin(x, p + ".intermediate.dense")
            f = 0.5 * f * (1 + erf(f / math.sqrt(2)))
            x = self.ln(self.lin(f, p + ".output.dense") + x, p + ".output.LayerNorm")
            if layers is not None:
                layers.append(x)
        return x


def embed(model_dir, texts, max_len=None):
    bert = Bert(model_dir)
    for e in tokens(model_dir, texts, max_len):
        x = bert.forward(np.array(e["ids"]), np.array(e["type_ids"]))
        v = x.mean(0)
        v = v / max(np.linalg.norm(v), 1e-12)
        yield {"embedding": v.tolist(), "ids": e["ids"]}


def hidden(model_dir, texts, max_len=None):
    """The last hidden state, one float64 vector per token, with HF's tokens and offsets."""
    bert = Bert(model_dir)
    for e in tokens(model_dir, texts, max_len):
        x = bert.forward(np.array(e["ids"]), np.array(e["type_ids"]))
        yield {**e, "hidden": x.tolist()}


def layers(model_dir, texts, max_len=None):
    """Every layer's output (TF Hub's encoder_outputs), one float64 vector per token."""
    bert = Bert(model_dir)
    for e in tokens(model_dir, texts, max_len):
        out = []
        bert.forward(np.array(e["ids"]), np.array(e["type_ids"]), out)
        yield {**e, "layers": [x.tolist() for x in out]}


def classify(model_dir, texts, max_len=None):
    """BertForSequenceClassification: [CLS] → pooler (tanh) → classifier → softmax."""
    bert = Bert(model_dir)
    w = bert.w
    for e in tokens(model_dir, texts, max_len or bert.cfg.get("max_position_embeddings", 512)):
        x = bert.forward(np.array(e["ids"]), np.array(e["type_ids"]))
        pooled = np.tanh(w["pooler.dense.weight"] @ x[0] + w["pooler.dense.bias"])
        logits = w["classifier.weight"] @ pooled + w["classifier.bias"]
        p = np.exp(logits - logits.max())
        yield {"probs": (p / p.sum()).tolist(), "cls": x[0].tolist(), "ids": e["ids"]}


def main():
    mode, model_dir = sys.argv[1], sys.argv[2]
    max_len = int(sys.argv[3]) if len(sys.argv) > 3 and mode != "random-tokens" else None
    if mode == "random-tokens":
        # random-tokens MODEL_DIR N SEED: random texts with their HF tokens.
        texts = random_texts(int(sys.argv[3]), int(sys.argv[4]))
        for t, r in zip(texts, tokens(model_dir, texts)):
            r["text"] = t
            print(json.dumps(r, ensure_ascii=False))
        return
    texts = [json.loads(line) for line in sys.stdin if line.strip()]
    fn = {"tokens": tokens, "embed": embed, "hidden": hidden, "layers": layers,
          "classify": classify}[mode]
    for r in fn(model_dir, texts, max_len):
        print(json.dumps(r, ensure_ascii=False))



def random_texts(n, seed):
    """Random strings mixing scripts, punctuation, whitespace, controls, specials."""
    import random

    rng = random.Random(seed)
    pools = [
        "abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789",
        " \t\n\r\u00a0\u2003\u3000",
        "!\"#$%&'()*+,-./:;<=>?@[\\]^_`{|}~¡¿«»“”‘’—–…·•§¶",
        "àáâãäåæçèéêëìíîïñòóôõöøùúûüýÿĀāĂăĄąĆćČčĎďĐđĒēĘęĚěĞğİıŁłŃńŇňŐőŒœŘřŚśŞşŠšŢţŤťŮůŰűŸŹźŻżŽž",
        "\u0300\u0301\u0302\u0308\u0327\u0303",
        "的一是不了人我在有他这中大来上国个到说们为子和你地出道也时年",
        "가나다라마바사아자차카타파하한국어",
        "абвгдеёжзийклмнопрстуфхцчшщъыьэюяАБВГДЕЖЗИЙ",
        "ابتثجحخدذرزسشصضطظعغفقكلمنهوي",
        "😀😃😄😁😆😅🤣😂🙂🙃😉😊👍🏽👨‍👩‍👧🍕🚀❤️",
        "\u200b\u200c\u200d\ufeff\u00ad\u0000\u0001\u0007\u001f\u007f\ufffd\u2028\u2029",
        "ＡＢＣａｂｃ１２３ﬁﬂ①②ℌ™",
    ]
    words = ["[CLS]", "[SEP]", "[MASK]", "[PAD]", "[UNK]", "the", "running", "unaffable", "https://x.y/z"]
    out = []
    for _ in range(n):
        parts = []
        for _ in range(rng.randint(1, 12)):
            if rng.random() < 0.1:
                parts.append(rng.choice(words))
            else:
                pool = rng.choice(pools)
                parts.append("".join(rng.choice(pool) for _ in range(rng.randint(1, 8))))
            parts.append(rng.choice(["", " ", "  ", "\t"]))
        t = "".join(parts)
        out.append([t, t[::-1]] if rng.random() < 0.15 else t)
    return out


if __name__ == "__main__":
    main()
