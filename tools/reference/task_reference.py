"""Independent reference answers for the task heads (tests/golden/tasks.jsonl): HF `tokenizers`
for tokens, offsets, windows and decoding, the float64 numpy forward pass of reference.py, and
the post-processing of Hugging Face's pipelines written out again here from their description
(fill-mask top-k, "simple" entity grouping, QA span search over strided windows).

    python3 task_reference.py TASKS_DIR > tests/golden/tasks.jsonl

TASKS_DIR is what make_task_checkpoints.py wrote.
"""
import json
import sys
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).parent))
import reference  # noqa: E402

FILL_MASK = [
    "where are you from? i'm from [MASK].",
    "The capital of France is [MASK].",
    "The [MASK] sat on the [MASK] all day.",
    "[MASK] is a programming language.",
    "Café prices rose by 5% in [MASK] this year.",
]
NSP = [
    ["I am going outside.", "I will be back after 6."],
    ["The market fell sharply.", "Penguins live in the southern hemisphere."],
    ["She scored twice in the final.", "Her team won the cup."],
    ["東京は日本の首都です。", "It is a large city."],
]
NER = [
    "Hugging Face is based in New York City",
    "My name is Wolfgang and I live in Berlin.",
    "Apple's CEO Tim Cook visited Zürich on Monday.",
    "The European Union fined Google €2.4 billion.",
    "naïve résumé",
]
QA = [
    ["Where is it based?", "Hugging Face is based in New York City.", 384, 128],
    ["Who scored?", "The striker scored twice in the cup final on Saturday, and the crowd cheered.", 384, 128],
    ["What did the company report?",
     "Shares in the carmaker fell after a profit warning. The company reported lower sales in "
     "Europe and Asia, and said costs for new factories would weigh on earnings for two more "
     "years. Analysts had expected a loss, but not one this large. The chief executive said the "
     "plan was unchanged and that new models would arrive next spring.", 48, 16],
    ["Why?", "Because the budget vote was delayed until next week, when parliament returns.", 24, 8],
]
CHOICE = [
    ["The cat sat on the", ["mat.", "moon.", "idea."]],
    ["After the rain stopped, we", ["went outside.", "ate the sky.", "slept."]],
]
POOLED = ["Hello, World!", "Parliament will vote on the new budget next week."]
CLEANUP = [(" .", "."), (" ?", "?"), (" !", "!"), (" ,", ","), (" ' ", "'"), (" n't", "n't"),
           (" 'm", "'m"), (" 's", "'s"), (" 've", "'ve"), (" 're", "'re")]


def softmax(x):
    e = np.exp(x - x.max(-1, keepdims=True))
    return e / e.sum(-1, keepdims=True)


def gelu(x):
    return 0.5 * x * (1 + reference.erf(x / np.sqrt(2)))


def decode(tok, ids):
    """transformers' decode(skip_special_tokens=True, clean_up_tokenization_spaces=True)."""
    s = tok.decode(ids, skip_special_tokens=True)
    for a, b in CLEANUP:
        s = s.replace(a, b)
    return s


def model(tasks, name):
    d = tasks / name
    return reference.Bert(d), reference.load_tokenizer(d, 512)


def fill_mask(tasks):
    bert, tok = model(tasks, "minilm-pretraining")
    w = bert.w
    mask = tok.token_to_id("[MASK]")
    for text in FILL_MASK:
        e = tok.encode(text)
        x = bert.forward(np.array(e.ids), np.array(e.type_ids))
        masks = []
        for p in [i for i, t in enumerate(e.ids) if t == mask]:
            h = gelu(w["cls.predictions.transform.dense.weight"] @ x[p]
                     + w["cls.predictions.transform.dense.bias"])
            mu, var = h.mean(), h.var()
            h = (h - mu) / np.sqrt(var + bert.eps) * w["cls.predictions.transform.LayerNorm.weight"] \
                + w["cls.predictions.transform.LayerNorm.bias"]
            probs = softmax(w["embeddings.word_embeddings.weight"] @ h + w["cls.predictions.bias"])
            top = np.argsort(-probs, kind="stable")[:6]
            preds = []
            for t in top[:5]:
                ids = list(e.ids)
                ids[p] = int(t)
                preds.append({"token": int(t), "token_str": tok.id_to_token(int(t)),
                              "score": float(probs[t]), "sequence": decode(tok, ids)})
            # The gap below the 5th candidate says how robust the top-5 order is.
            masks.append({"predictions": preds, "sixth_score": float(probs[top[5]])})
        yield {"task": "fill-mask", "text": text, "masks": masks}


def next_sentence(tasks):
    bert, tok = model(tasks, "minilm-pretraining")
    w = bert.w
    for a, b in NSP:
        e = tok.encode(a, b)
        x = bert.forward(np.array(e.ids), np.array(e.type_ids))
        pooled = np.tanh(w["pooler.dense.weight"] @ x[0] + w["pooler.dense.bias"])
        probs = softmax(w["cls.seq_relationship.weight"] @ pooled + w["cls.seq_relationship.bias"])
        yield {"task": "nsp", "a": a, "b": b, "probs": probs.tolist(),
               "pooled": pooled.tolist()}


def split_tag(tag):
    if tag.startswith("B-"):
        return "B", tag[2:]
    if tag.startswith("I-"):
        return "I", tag[2:]
    return "I", tag


def entities(tasks):
    bert, tok = model(tasks, "minilm-ner")
    w = bert.w
    labels = [bert.cfg["id2label"][str(i)] for i in range(len(bert.cfg["id2label"]))]
    for text in NER:
        e = tok.encode(text)
        x = bert.forward(np.array(e.ids), np.array(e.type_ids))
        probs = softmax(x @ w["classifier.weight"].T + w["classifier.bias"])
        tokens = []
        for i in range(1, len(e.ids) - 1):
            best = int(np.argmax(probs[i]))
            tokens.append({"tag": labels[best], "score": float(probs[i][best]),
                           "token": e.tokens[i], "start": e.offsets[i][0], "end": e.offsets[i][1],
                           "margin": float(np.sort(probs[i])[-1] - np.sort(probs[i])[-2])})
        groups = []
        for t in tokens:
            bi, tag = split_tag(t["tag"])
            if groups and bi != "B" and split_tag(groups[-1][0]["tag"])[1] == tag:
                groups[-1].append(t)
            else:
                groups.append([t])
        ents = []
        for g in groups:
            tag = split_tag(g[0]["tag"])[1]
            if tag == "O":
                continue
            word = " ".join(t["token"] for t in g).replace(" ##", "").strip()
            ents.append({"entity_group": tag, "score": float(np.mean([t["score"] for t in g])),
                         "word": word, "start": g[0]["start"], "end": g[-1]["end"]})
        yield {"task": "ner", "text": text, "tokens": tokens, "entities": ents}


def answers(tasks):
    bert, _ = model(tasks, "minilm-qa")
    w = bert.w
    from tokenizers import Tokenizer

    for question, context, max_len, stride in QA:
        tok = Tokenizer.from_file(str(tasks / "minilm-qa" / "tokenizer.json"))
        tok.no_padding()
        tok.enable_truncation(max_len, stride=stride, strategy="only_second")
        first = tok.encode(question, context)
        windows = [first] + list(first.overflowing)
        best = None
        for wi, e in enumerate(windows):
            x = bert.forward(np.array(e.ids), np.array(e.type_ids))
            logits = x @ w["qa_outputs.weight"].T + w["qa_outputs.bias"]
            seq = e.sequence_ids
            undesired = np.array([0 if (s == 1 or i == 0) else 1 for i, s in enumerate(seq)])
            ps, pe = [], []
            for col in (0, 1):
                z = np.where(undesired == 1, -10000.0, logits[:, col])
                p = softmax(z)
                p[0] = 0.0
                (ps if col == 0 else pe).append(p)
            outer = np.outer(ps[0], pe[0])
            cand = np.tril(np.triu(outer), 15 - 1)
            for s in range(len(seq)):
                for t in range(len(seq)):
                    if seq[s] == 1 and seq[t] == 1 and cand[s, t] > 0:
                        if best is None or cand[s, t] > best[0]:
                            best = (float(cand[s, t]), wi, s, t)
        score, wi, s, t = best
        start, end = windows[wi].offsets[s][0], windows[wi].offsets[t][1]
        yield {"task": "qa", "question": question, "context": context, "max_len": max_len,
               "stride": stride, "windows": [e.ids for e in windows],
               "answer": context[start:end], "score": score, "start": start, "end": end}


def choices(tasks):
    bert, tok = model(tasks, "minilm-choice")
    w = bert.w
    for context, options in CHOICE:
        logits = []
        for c in options:
            e = tok.encode(context, c)
            x = bert.forward(np.array(e.ids), np.array(e.type_ids))
            pooled = np.tanh(w["pooler.dense.weight"] @ x[0] + w["pooler.dense.bias"])
            logits.append(float(w["classifier.weight"][0] @ pooled + w["classifier.bias"][0]))
        yield {"task": "choice", "context": context, "choices": options,
               "probs": softmax(np.array(logits)).tolist()}


def pooled(tasks):
    bert, tok = model(tasks, "minilm-pretraining")
    w = bert.w
    for text in POOLED:
        e = tok.encode(text)
        x = bert.forward(np.array(e.ids), np.array(e.type_ids))
        p = np.tanh(w["pooler.dense.weight"] @ x[0] + w["pooler.dense.bias"])
        yield {"task": "pooled", "text": text, "pooled": p.tolist()}


def main():
    tasks = Path(sys.argv[1])
    for gen in (fill_mask, next_sentence, entities, answers, choices, pooled):
        for record in gen(tasks):
            print(json.dumps(record, ensure_ascii=False))


if __name__ == "__main__":
    main()
