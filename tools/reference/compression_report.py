"""`bertlite-tool eval --json` files of tools/sweep.sh, one per seeded split -> results/compression.md:
each point's accuracy change against the unpruned int8 bundle of the same split (mean and
spread over the splits), FLOPs, latency and speed-up, cosine to fp32, and the per-split rows.

    python3 compression_report.py "SEED..." EVAL.json...
"""
import json
import os
import statistics
import sys


def name(row):
    return row["name"].removesuffix(".blt")


def machine():
    """The CPU the latencies were measured on: the speed-ups depend on it (an AMX host runs the
    int8 linears much faster than the attention, so pruning's gains there are smaller)."""
    model, flags = "unknown CPU", set()
    try:
        for line in open("/proc/cpuinfo"):
            if line.startswith("model name") and model == "unknown CPU":
                model = line.split(":", 1)[1].strip()
            elif line.startswith("flags") and not flags:
                flags = set(line.split(":", 1)[1].split())
    except OSError:
        pass
    isa = "AMX" if "amx_int8" in flags else "AVX-512 VNNI" if "avx512_vnni" in flags else "no VNNI"
    return f"{model}, {os.cpu_count()} cores, {isa}"


def mean_sd(xs):
    m = statistics.mean(xs)
    return m, (statistics.stdev(xs) if len(xs) > 1 else 0.0)


# Student's t, one-sided 95% (the 0.95 quantile), by degrees of freedom 1-20: a table, since the
# reference scripts use the standard library only.
T95 = [6.314, 2.920, 2.353, 2.132, 2.015, 1.943, 1.895, 1.860, 1.833, 1.812,
       1.796, 1.782, 1.771, 1.761, 1.753, 1.746, 1.740, 1.734, 1.729, 1.725]


def lower_bound(xs):
    """The one-sided 95% lower confidence bound of the splits' mean: what "within 0.5 pt" is
    judged by. One split cannot show it: a split's 444 articles move its Δ by whole articles
    (0.23 pt) and two bundles disagree on 6-15 of them, so one split's Δ is noise of ±0.6 pt."""
    if len(xs) < 2:
        return float("nan")
    m, sd = mean_sd(xs)
    return m - T95[min(len(xs) - 1, len(T95)) - 1] * sd / len(xs) ** 0.5


def main():
    seeds = sys.argv[1].split()
    runs = [json.load(open(p)) for p in sys.argv[2:]]
    by = [{name(r): r for r in run["rows"][1:]} | {"fp32": run["rows"][0]} for run in runs]
    # The points every split has (reports of two sweeps may be joined over their common points).
    points = [p for p in map(name, runs[0]["rows"][1:]) if all(p in b for b in by)]
    print("# Compression trade-off: all-MiniLM-L6-v2 on BBC News, over seeded splits\n")
    print(f"{len(runs)} stratified 80/20 splits of the 2225 articles (seeds {', '.join(seeds)}; "
          "`tools/reference/make_bbc_split.py`), none of them the project's own split. On each split "
          "every bundle's head is retrained (`--train`) on its own embeddings of that split's training "
          "articles, pruning importance and repair are calibrated on 128 of them, and accuracy is "
          "measured on all its test articles. Δ is against the unpruned int8 bundle of the same "
          "split; ± is the standard deviation over the splits. Latency: batch 1, 1 thread, the first "
          f"40 test articles (mean {statistics.mean(r['mean_tokens'] for r in runs):.0f} tokens per article), "
          "`--precision auto`, each article's time the median of 5 runs, the bundles taking turns "
          "article by article (`bertlite-tool eval`). 95% bound: the one-sided 95% lower confidence "
          "bound of the mean Δ (Student's t over the splits), what a goal stated as \"within N pt\" "
          "is judged by: one article is 0.23 pt of a split.\n")
    print(f"Machine: {machine()}.\n")
    command = os.environ.get("REGENERATE", "tools/sweep.sh 1 2 3")
    print(f"Regenerate: `{command}` (after `tools/setup.sh`).\n")
    print("| bundle | pruning | FLOPs vs full | accuracy | Δ vs int8 (pt) | 95% bound | worst split Δ | cosine to fp32 (mean) | p50 ms | speed-up vs int8 | MB |")
    print("|---|---|---|---|---|---|---|---|---|---|---|")
    for p in ["fp32"] + points:
        rows = [b[p] for b in by]
        acc, acc_sd = mean_sd([r["accuracy"] for r in rows])
        deltas = [100 * (b[p]["accuracy"] - b["int8"]["accuracy"]) for b in by]
        d, d_sd = mean_sd(deltas)
        cos, _ = mean_sd([r["cosine_mean"] for r in rows])
        p50, _ = mean_sd([r["latency_p50_ms"] for r in rows])
        speed, speed_sd = mean_sd([b["int8"]["latency_p50_ms"] / b[p]["latency_p50_ms"] for b in by])
        flops = 100 * rows[0]["gflops_per_text"] / by[0]["fp32"]["gflops_per_text"]
        pr = (rows[0].get("pruning") or "—").split(";")
        how = [w for w, key in (("repaired", "refitted"), ("distilled", "distilled")) if any(key in x for x in pr)]
        pr = pr[0].replace("structured: ", "") + (f" ({', '.join(how)})" if how else "")
        print(f"| {p} | {pr} | {flops:.0f}% | {acc:.4f} ± {acc_sd:.4f} | {d:+.2f} ± {d_sd:.2f} | "
              f"{lower_bound(deltas):+.2f} | {min(deltas):+.2f} | {cos:.4f} | {p50:.1f} | {speed:.2f}× ± {speed_sd:.2f} | "
              f"{rows[0]['size_bytes'] / 1e6:.2f} |")
    print("\nPer split (accuracy; Δ vs int8 in points; speed-up vs int8):\n")
    print("| bundle | " + " | ".join(f"seed {s}" for s in seeds) + " |")
    print("|---|" + "---|" * len(seeds))
    for p in ["fp32"] + points:
        cells = [f"{b[p]['accuracy']:.4f} ({100 * (b[p]['accuracy'] - b['int8']['accuracy']):+.2f}; "
                 f"{b['int8']['latency_p50_ms'] / b[p]['latency_p50_ms']:.2f}×)" for b in by]
        print(f"| {p} | " + " | ".join(cells) + " |")
    budgets = [(p, by[0][p]["pruning"]) for p in points if "budget:" in (by[0][p].get("pruning") or "")]
    if budgets:
        print("\nWhat the budget (`--target-flops`, `--target-latency`) chose per layer (first split; each split calibrates its own):\n")
        for p, desc in budgets:
            per_layer = next((x.strip() for x in desc.split(";") if x.strip().startswith("per layer")), "")
            model = next((x.strip() for x in desc.split(";") if x.strip().startswith("latency model")), "")
            print(f"- {p}: {per_layer.removeprefix('per layer: ')}" + (f" ({model})" if model else ""))
    svg = os.environ.get("REPORT_NAME", "compression") + ".svg"
    print(f"\n![accuracy vs latency, first split]({svg})\n")
    print("Cosine is of the pooled embedding to the fp32 model's: pruned encoders are other models, "
          "so it measures how far pruning moved the representation (what the repair pulls back), not "
          "an error.")


if __name__ == "__main__":
    main()
