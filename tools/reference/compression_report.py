"""results/compression.json (from `bertlite-tool eval`) -> the markdown table of results/compression.md."""
import json
import sys

r = json.load(open(sys.argv[1]))
rows = r["rows"]
ref = rows[0]
int8 = next((x for x in rows if x["name"].startswith("int8")), rows[1])
print("# Compression trade-off: all-MiniLM-L6-v2 on BBC News\n")
print(f"{r['examples']} test articles (mean {r['mean_tokens']:.0f} tokens), {r['threads']} thread(s), batch 1. "
      f"Reference: {r['reference']}. Each bundle's head was retrained (`--train`) on its own embeddings of the "
      "1781 training articles; the fp32 row uses the int8 bundle's head. Regenerate with `tools/sweep.sh`.\n")
if any(x.get("peak_rss_mib") for x in rows):
    print("Peak RSS (fresh process, load + one text): " + ", ".join(f"{x['name']} {x['peak_rss_mib']:.0f} MiB" for x in rows if x.get("peak_rss_mib")) + ".\n")
print("| model | pruning | accuracy | Δ vs fp32 (pt) | macro-F1 | agreement with fp32 | cosine mean / min | MB | GFLOP/text | FLOPs vs full | p50 ms | p95 ms | speed-up vs int8 |")
print("|---|---|---|---|---|---|---|---|---|---|---|---|---|")
for x in rows:
    pr = (x.get("pruning") or "—").split(";")[0].replace("structured: ", "")
    print(f"| {x['name']} | {pr} | {x['accuracy']:.4f} | {100 * (x['accuracy'] - ref['accuracy']):+.2f} | {x['macro_f1']:.4f} | "
          f"{x['agreement_with_reference']:.4f} | {x['cosine_mean']:.4f} / {x['cosine_min']:.4f} | {x['size_bytes'] / 1e6:.2f} | "
          f"{x['gflops_per_text']:.2f} | {100 * x['gflops_per_text'] / ref['gflops_per_text']:.0f}% | {x['latency_p50_ms']:.1f} | "
          f"{x['latency_p95_ms']:.1f} | {int8['latency_p50_ms'] / x['latency_p50_ms']:.2f}× |")
print("\n![accuracy vs latency](compression.svg)\n")
print("Cosine is of the pooled embedding to the fp32 model's; pruned encoders are different models, so their cosine "
      "measures how far pruning moved the representation, not an error.")
