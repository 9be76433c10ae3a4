"""bertlite vs ONNX Runtime on all-MiniLM-L6-v2: same weights, same token ids, one script.

    python3 tools/bench.py [--bundle B] [--quick]

Needs tools/setup.sh, `cargo build --release -p bertlite`, GNU time (`apt-get install time`).

Baselines (tools/reference/make_onnx.py, built from the same safetensors and checked against the
float64 reference): ONNX Runtime fp32, and ONNX Runtime int8 = quantize_dynamic(per_channel=True,
weight_type=QInt8, MatMul only). For every (tokens, batch, threads) the three runtimes are timed
in turn, round after round, and medians of the rounds are reported with ratios, so a noisy
machine moves all of them together. Timing covers encoder + mean pooling (+ L2 norm), not
tokenization or loading. Also: load-to-first-answer, peak RSS, fidelity (cosine to fp32), and
achieved GFLOP/s against the encoder's FLOP count. Results go to results/bench.md and .json.
"""
import argparse
import json
import os
import platform
import statistics
import subprocess
import sys
import time
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parent.parent
CACHE = Path(os.environ.get("BERTLITE_CACHE", Path.home() / ".cache/bertlite"))
sys.path.insert(0, str(ROOT / "tools/reference"))


def flops(n_tokens, hidden=384, ffn=1536, layers=6):
    per_layer = 2 * (4 * hidden * hidden + 2 * hidden * ffn) * n_tokens + 2 * 2 * hidden * n_tokens * n_tokens
    return layers * per_layer


def mean_pool(hidden, mask):
    m = mask[..., None].astype(np.float32)
    v = (hidden * m).sum(1) / np.maximum(m.sum(1), 1e-9)
    return v / np.maximum(np.linalg.norm(v, axis=-1, keepdims=True), 1e-12)


def ort_session(path, threads):
    import onnxruntime as ort

    so = ort.SessionOptions()
    so.intra_op_num_threads = threads
    so.inter_op_num_threads = 1
    so.execution_mode = ort.ExecutionMode.ORT_SEQUENTIAL
    return ort.InferenceSession(str(path), so, providers=["CPUExecutionProvider"])


def time_ort(sess, batches, iters):
    """ms per text, median over iters of each batch, averaged over batches."""
    per_text = []
    for ids in batches:
        feed = {"input_ids": ids, "attention_mask": np.ones_like(ids), "token_type_ids": np.zeros_like(ids)}
        mean_pool(sess.run(None, feed)[0], feed["attention_mask"])
        ts = []
        for _ in range(iters):
            t = time.perf_counter()
            mean_pool(sess.run(None, feed)[0], feed["attention_mask"])
            ts.append(time.perf_counter() - t)
        per_text.append(1e3 * statistics.median(ts) / ids.shape[0])
    return statistics.mean(per_text)


def time_bertlite(exe, bundle, texts, n, batch, threads, iters, precision):
    cmd = [str(exe), "bench", "-m", str(bundle), "--json", "--threads", str(threads), "--iters", str(iters), "--batch", str(batch), "--truncate", str(n), "--precision", precision]
    # One text per line: newlines inside an article become spaces (the same separator to WordPiece).
    lines = "\n".join(" ".join(t.split("\n")) for t in texts) + "\n"
    out = subprocess.run(cmd, input=lines, capture_output=True, text=True, check=True).stdout
    rows = [json.loads(line) for line in out.splitlines() if line.startswith("{")]
    rows = [r for r in rows if "p50_ms" in r]
    return statistics.mean(r["p50_ms"] / r["batch"] for r in rows)


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--bundle", default=str(CACHE / "bundles/minilm-int8.blt"))
    ap.add_argument("--bertlite", default=str(Path(os.environ.get("CARGO_TARGET_DIR", CACHE / "target")) / "release/bertlite"))
    ap.add_argument("--lengths", default="16,64,128,256")
    ap.add_argument("--batches", default="1,8")
    ap.add_argument("--threads", default="1,2")
    ap.add_argument("--iters", type=int, default=15)
    ap.add_argument("--rounds", type=int, default=3)
    ap.add_argument("--precision", default="auto", help="bertlite's --precision (auto, f32, f16, int8)")
    ap.add_argument("--quick", action="store_true", help="16 and 128 tokens, batch 1, 1 thread")
    ap.add_argument("--out", default=str(ROOT / "results/bench"))
    ap.add_argument("--reuse-speed", action="store_true", help="keep the speed table of OUT.json, redo the rest")
    a = ap.parse_args()
    if a.quick:
        a.lengths, a.batches, a.threads = "16,128", "1", "1"
    model_dir = ROOT / "models/all-MiniLM-L6-v2"
    onnx_dir = CACHE / "onnx"
    if not (onnx_dir / "minilm-int8.onnx").exists():
        subprocess.run([sys.executable, str(ROOT / "tools/reference/make_onnx.py"), str(model_dir), str(onnx_dir)], check=True)
    from tokenizers import Tokenizer

    tok = Tokenizer.from_file(str(model_dir / "tokenizer.json"))
    tok.no_padding()
    rows_in = [json.loads(line) for line in open(ROOT / "data/bbc/test.jsonl")]
    long_texts = [r["text"] for r in rows_in if len(r["text"]) > 2500][:8]
    lengths = [int(x) for x in a.lengths.split(",")]
    batches = [int(x) for x in a.batches.split(",")]
    threads = [int(x) for x in a.threads.split(",")]

    results = []
    sessions = {}
    for th in threads:
        for kind in ("fp32", "int8"):
            sessions[(kind, th)] = ort_session(onnx_dir / f"minilm-{kind}.onnx", th)
    if a.reuse_speed:
        results = json.loads(Path(a.out + ".json").read_text())["speed"]
        lengths = []
    for n in lengths:
        tok.enable_truncation(n)
        ids = [tok.encode(t).ids for t in long_texts]
        assert all(len(i) == n for i in ids), "texts shorter than the length asked"
        for b in batches:
            groups = [np.array(ids[i : i + b], dtype=np.int64) for i in range(0, len(ids), b)][: max(1, 4 // b) if b == 1 else 1]
            texts = long_texts[: sum(g.shape[0] for g in groups)]
            for th in threads:
                rounds = {"ort_fp32": [], "ort_int8": [], "bertlite": []}
                for _ in range(a.rounds):
                    rounds["ort_fp32"].append(time_ort(sessions[("fp32", th)], groups, a.iters))
                    rounds["ort_int8"].append(time_ort(sessions[("int8", th)], groups, a.iters))
                    rounds["bertlite"].append(time_bertlite(a.bertlite, a.bundle, texts, n, b, th, a.iters, a.precision))
                med = {k: statistics.median(v) for k, v in rounds.items()}
                row = {"tokens": n, "batch": b, "threads": th, **{f"{k}_ms": v for k, v in med.items()}}
                row["ratio_vs_ort_int8"] = med["bertlite"] / med["ort_int8"]
                row["ratio_vs_ort_fp32"] = med["bertlite"] / med["ort_fp32"]
                row["bertlite_gflops"] = flops(n) / (med["bertlite"] * 1e-3) / 1e9
                row["ort_int8_gflops"] = flops(n) / (med["ort_int8"] * 1e-3) / 1e9
                results.append(row)
                print(json.dumps(row), file=sys.stderr)

    # Fidelity on 64 BBC test articles (natural truncation at 256): cosine to ORT fp32.
    tok.enable_truncation(256)
    sample = [r["text"] for r in rows_in[:64]]
    ref, q8 = [], []
    for t in sample:
        e = np.array([tok.encode(t).ids], dtype=np.int64)
        feed = {"input_ids": e, "attention_mask": np.ones_like(e), "token_type_ids": np.zeros_like(e)}
        ref.append(mean_pool(sessions[("fp32", threads[0])].run(None, feed)[0], feed["attention_mask"])[0])
        q8.append(mean_pool(sessions[("int8", threads[0])].run(None, feed)[0], feed["attention_mask"])[0])
    out = subprocess.run([a.bertlite, "embed", "-m", a.bundle, "--json", "--threads", "1", "--precision", a.precision], input="\n".join(t.replace("\n", " ") for t in sample) + "\n", capture_output=True, text=True, check=True).stdout
    bl = [np.array(json.loads(line)["embedding"]) for line in out.splitlines()]
    # bertlite got the article with newlines as spaces: same tokens (whitespace is a separator).
    cos = lambda x, y: float(np.dot(x, y) / (np.linalg.norm(x) * np.linalg.norm(y)))
    fid = {
        "ort_int8": [cos(r, q) for r, q in zip(ref, q8)],
        "bertlite": [cos(r, q) for r, q in zip(ref, bl)],
    }
    fidelity = {k: {"mean": statistics.mean(v), "min": min(v)} for k, v in fid.items()}

    # Cold start (load to first answer) and peak RSS, each in a fresh process started by GNU
    # time (a fork of this big Python process would report its RSS instead).
    gnu_time = ["/usr/bin/time", "-f", "%M"]
    t = time.perf_counter()
    r = subprocess.run(gnu_time + [a.bertlite, "embed", "-m", a.bundle, "--threads", "1", "--precision", a.precision, "Shares fell."], capture_output=True, text=True, check=True)
    bl_cold = time.perf_counter() - t
    bl_rss = int(r.stderr.strip().splitlines()[-1]) / 1024
    child = (
        "import time,numpy as np,onnxruntime as ort\n"
        "t=time.perf_counter()\n"
        "so=ort.SessionOptions(); so.intra_op_num_threads=1\n"
        f"s=ort.InferenceSession({str(onnx_dir / 'minilm-int8.onnx')!r}, so, providers=['CPUExecutionProvider'])\n"
        "ids=np.array([[101,6661,3062,1012,102]],dtype=np.int64)\n"
        "s.run(None,{'input_ids':ids,'attention_mask':np.ones_like(ids),'token_type_ids':np.zeros_like(ids)})\n"
        "print(time.perf_counter()-t)\n"
    )
    r = subprocess.run(gnu_time + [sys.executable, "-c", child], capture_output=True, text=True, check=True)
    ort_cold = float(r.stdout.split()[0])
    ort_rss = int(r.stderr.strip().splitlines()[-1]) / 1024
    env = {
        "machine": f"{platform.machine()}, {os.cpu_count()} cores, {cpu_model()}",
        "onnxruntime": __import__("onnxruntime").__version__,
        "bundle": a.bundle,
        # What --precision resolved to on this machine (auto depends on the CPU).
        "bertlite_precision": next(
            (l.split(None, 1)[1] for l in subprocess.run([a.bertlite, "info", "-m", a.bundle, "--precision", a.precision], capture_output=True, text=True, check=True).stdout.splitlines() if l.startswith("precision")),
            a.precision,
        ),
        "command": "python3 " + " ".join(sys.argv),
    }
    report = {
        "env": env,
        "speed": results,
        "fidelity_cosine_to_fp32": fidelity,
        "cold_start_s": {"bertlite_process": bl_cold, "ort_int8_session_in_python": ort_cold},
        "peak_rss_mib": {"bertlite": bl_rss, "ort_int8_python_process": ort_rss},
    }
    Path(a.out).parent.mkdir(parents=True, exist_ok=True)
    Path(a.out + ".json").write_text(json.dumps(report, indent=2))
    Path(a.out + ".md").write_text(markdown(report))
    print(markdown(report))


def cpu_model():
    try:
        for line in open("/proc/cpuinfo"):
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor()


def markdown(r):
    e = r["env"]
    lines = [
        "# bertlite vs ONNX Runtime — all-MiniLM-L6-v2",
        "",
        f"Machine: {e['machine']}. ONNX Runtime {e['onnxruntime']}. Bundle: `{Path(e['bundle']).name}`, bertlite precision {e.get('bertlite_precision', '?')}.",
        f"Regenerate: `{e['command']}` (after `tools/setup.sh` and `cargo build --release`).",
        "",
        "ms per text, encoder + pooling, median of rounds (each the median of many runs); ratio < 1 means bertlite is faster.",
        "",
        "| tokens | batch | threads | ORT fp32 | ORT int8 | bertlite | bertlite / ORT int8 | bertlite / ORT fp32 | bertlite GFLOP/s | ORT int8 GFLOP/s |",
        "|---|---|---|---|---|---|---|---|---|---|",
    ]
    for s in r["speed"]:
        lines.append(
            f"| {s['tokens']} | {s['batch']} | {s['threads']} | {s['ort_fp32_ms']:.2f} | {s['ort_int8_ms']:.2f} | {s['bertlite_ms']:.2f} | "
            f"{s['ratio_vs_ort_int8']:.2f} | {s['ratio_vs_ort_fp32']:.2f} | {s['bertlite_gflops']:.1f} | {s['ort_int8_gflops']:.1f} |"
        )
    f = r["fidelity_cosine_to_fp32"]
    c = r["cold_start_s"]
    m = r["peak_rss_mib"]
    lines += [
        "",
        "Fidelity, cosine of the pooled embedding to ORT fp32 (true fp32 weights), 64 BBC test articles at 256 tokens:",
        f"ORT int8 mean {f['ort_int8']['mean']:.5f} / min {f['ort_int8']['min']:.5f}; bertlite mean {f['bertlite']['mean']:.5f} / min {f['bertlite']['min']:.5f}.",
        "",
        f"Load to first answer: bertlite {c['bertlite_process']:.2f} s (whole process: exec + load + optimize + one text); "
        f"ORT int8 {c['ort_int8_session_in_python']:.2f} s (session creation + one run, inside Python, interpreter start excluded).",
        f"Peak RSS: bertlite {m['bertlite']:.0f} MiB; ORT int8 Python process {m['ort_int8_python_process']:.0f} MiB (includes the interpreter and numpy).",
        "",
    ]
    return "\n".join(lines)


if __name__ == "__main__":
    main()
