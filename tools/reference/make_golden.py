"""Regenerates tests/golden/ from the independent references (HF tokenizers, numpy forward pass):

    python3 tools/reference/make_golden.py models/all-MiniLM-L6-v2 tests/golden

texts.jsonl       the varied corpus (one JSON string, or [a, b] pair, per line)
tokens.jsonl      HF `tokenizers` ids/type_ids/tokens for each (truncation at 256, as the model)
embeddings.jsonl  numpy float64 forward pass + mean pooling + L2 norm for the sentences
"""
import json
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).parent))
import reference  # noqa: E402

TEXTS = [
    "Hello, World!",
    "Shares in the carmaker fell after a profit warning.",
    "The striker scored twice in the cup final on Saturday.",
    "Parliament will vote on the new budget next week.",
    "The film won three awards at the festival in Cannes.",
    "Apple's new chip runs 30% faster than last year's model.",
    "Café crème, naïve résumé, jalapeño, Ångström, Zürich",
    "Ça va? Œuvre, straße, façade, coöperate",
    "東京は日本の首都です。",
    "我爱北京天安门",
    "한국어 문장도 잘 처리되나요?",
    "Привет, как дела? Москва — столица России.",
    "مرحبا بالعالم، كيف حالك اليوم؟",
    "שלום עולם",
    "ภาษาไทยไม่มีช่องว่าง",
    "नमस्ते दुनिया",
    "Ελληνικά γράμματα: αβγδε",
    "I love pizza 🍕🍕 and emoji 😀👍🏽👨‍👩‍👧",
    "Visit https://example.com/path?query=1&x=y#frag or mail me at a.b@c.org",
    "<p>Some <b>bold</b> HTML &amp; entities &lt;tag&gt;</p>",
    "Numbers: 3.14159, 1,000,000, -42, 1e-9, $5.99, 12:30pm, 2026-11-24",
    "tab\tseparated\tand\nnew\nlines\r\nand carriage returns",
    "zero\u200bwidth\u200cjoiners\u200dand\ufeffBOM",
    "control\u0001chars\u0007here\u001f and \u007f del",
    "soft\u00adhyphen and non\u00a0breaking space",
    "a",
    "!",
    "é",
    "中",
    "😀",
    " leading and trailing spaces ",
    "ALL CAPS SHOUTING TEXT",
    "MiXeD cAsE wOrDs",
    "don't won't can't it's y'all",
    "hyphenated-words and under_scores and slashes/here",
    "supercalifragilisticexpialidocious antidisestablishmentarianism",
    "x" * 150,
    "word " * 300,
    "[CLS] literal special tokens [SEP] inside [MASK] text [PAD] [UNK]",
    "[cls] lowercase [sep] is not special",
    "Ｆｕｌｌｗｉｄｔｈ ｌｅｔｔｅｒｓ",
    "ﬁ ligature and ℌ script and ① circled",
    "İstanbul ISTANBUL ıi",
    "The quick brown fox jumps over the lazy dog.",
    "Interest rates were left unchanged by the central bank.",
    "The government announced new immigration rules today.",
    "The band's new album tops the charts for a second week.",
    "Broadband use has grown rapidly across Europe.",
    "The tennis champion withdrew from the tournament with an injury.",
    "Oil prices rose sharply after the pipeline was damaged.",
    "Scientists unveil a robot that can learn to walk.",
    "The actor was nominated for an Oscar for his role.",
    "Mobile phone sales hit a record in the last quarter.",
    "The prime minister faced tough questions in parliament.",
    "England beat France in a thrilling rugby match.",
    "Software bugs cost the economy billions each year.",
    "A tiny step for a model, a giant leap for edge devices.",
    ["How old are you?", "I am six years old."],
    ["A man is playing a guitar.", "Someone plays music."],
    ["short", "a much longer second sentence " * 100],
]


def main(model_dir, out):
    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    with open(out / "texts.jsonl", "w", encoding="utf-8") as f:
        for t in TEXTS:
            f.write(json.dumps(t, ensure_ascii=False) + "\n")
    with open(out / "tokens.jsonl", "w", encoding="utf-8") as f:
        for r in reference.tokens(model_dir, TEXTS):
            f.write(json.dumps(r, ensure_ascii=False) + "\n")
    sentences = [t for t in TEXTS if isinstance(t, str) and len(t) < 400]
    with open(out / "embeddings.jsonl", "w", encoding="utf-8") as f:
        for t, r in zip(sentences, reference.embed(model_dir, sentences)):
            emb = [float(f"{x:.8f}") for x in r["embedding"]]
            f.write(json.dumps({"text": t, "embedding": emb}, ensure_ascii=False) + "\n")
    print(f"{len(TEXTS)} texts, {len(sentences)} embeddings -> {out}", file=sys.stderr)


if __name__ == "__main__":
    main(sys.argv[1], sys.argv[2])
