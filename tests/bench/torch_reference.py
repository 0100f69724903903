#!/usr/bin/env python3
"""Plain-PyTorch flat DSA and HISA selection — what a user would write — timed on the same card and in the same
command as `hisa bench --device cuda`, so every figure has a side-by-side ratio.

Shape as in `hisa bench`: N queries that each see all L keys (decode), H heads, D dims, bf16 q and k, fp32
weights, k-of-L top-k; HISA with B-token blocks (mean-pooled keys), m blocks kept with the first and last block
forced (in-budget), then the exact top-k of the kept blocks' tokens.

hisa's figures come from one `hisa bench --device cuda --keys L1,L2,... --no-prefill --json FILE` run (its
sampled cases): kernel times by CUDA events, flat = scoring + top-k, HISA = block scores + block choice + token
scores + top-k.

Also a full causal prefill (L queries, query i seeing keys [0, i]) at each --prefill length, PyTorch in
512-query chunks with position masks, HISA forcing each query's first and own block.

Usage: tests/bench/torch_reference.py --hisa build/cli/hisa [--keys 8192,32768,65536,131072] [--queries 256]
                                      [--prefill 32768,65536] [--chunk 512]
"""
import argparse
import json
import os
import statistics
import subprocess
import tempfile

import torch


def time_ms(fn, repeat):
    """Median of CUDA-event times over `repeat` calls, after two warm-up calls."""
    for _ in range(2):
        fn()
    times = []
    for _ in range(repeat):
        start, stop = torch.cuda.Event(enable_timing=True), torch.cuda.Event(enable_timing=True)
        start.record()
        fn()
        stop.record()
        torch.cuda.synchronize()
        times.append(start.elapsed_time(stop))
    return statistics.median(times)


def index_scores(q, w, k):
    """I[n, s] = sum_h w[n, h] * relu(q[n, h, :] . k[s, :]), fp32; the [N, H, L] logits are materialised."""
    logits = torch.einsum("nhd,ld->nhl", q, k).float().relu_()
    return torch.einsum("nhl,nh->nl", logits, w)


def flat_select(q, w, k, topk):
    return index_scores(q, w, k).topk(topk, dim=-1).indices


def hisa_select(q, w, k, topk, block, m):
    n_keys, dim = k.shape
    blocks = k.view(n_keys // block, block, dim)
    pooled = blocks.float().mean(dim=1).to(k.dtype)
    j = index_scores(q, w, pooled)                       # [N, L/B]
    j[:, 0] = float("inf")                               # forced: the first block (k_start) ...
    j[:, -1] = float("inf")                              # ... and the last (q_pos), inside the budget
    kept = j.topk(m, dim=-1).indices                     # [N, m]
    tokens = blocks[kept]                                # [N, m, B, D]
    logits = torch.einsum("nhd,nmbd->nhmb", q, tokens).float().relu_()
    scores = torch.einsum("nhmb,nh->nmb", logits, w).flatten(1)  # [N, m*B]
    best = scores.topk(min(topk, scores.shape[1]), dim=-1).indices
    return (kept * block).repeat_interleave(block, dim=1).gather(1, best) + best % block


def causal_flat(q, w, k, topk, chunk):
    """Full causal prefill, flat: query i sees keys [0, i]; 512-query chunks, masked by position."""
    n_keys = k.shape[0]
    for s in range(0, n_keys, chunk):
        e = min(n_keys, s + chunk)
        scores = index_scores(q[s:e], w[s:e], k[:e])                       # [c, e]
        q_pos = torch.arange(s, e, device=k.device)[:, None]
        scores.masked_fill_(torch.arange(e, device=k.device)[None, :] > q_pos, float("-inf"))
        scores.topk(min(topk, e), dim=-1)


def causal_hisa(q, w, k, topk, block, m, chunk):
    """Full causal prefill, HISA: each query's visible blocks, its first and own block forced (in-budget)."""
    n_keys, dim = k.shape
    n_blocks = n_keys // block
    blocks = k.view(n_blocks, block, dim)
    pooled = blocks.float().mean(dim=1).to(k.dtype)
    for s in range(0, n_keys, chunk):
        e = min(n_keys, s + chunk)
        q_pos = torch.arange(s, e, device=k.device)[:, None]
        own = q_pos // block
        j = index_scores(q[s:e], w[s:e], pooled)                            # [c, L/B]
        j.masked_fill_(torch.arange(n_blocks, device=k.device)[None, :] > own, float("-inf"))
        j[:, 0] = float("inf")
        j.scatter_(1, own, float("inf"))
        kept = j.topk(min(m, n_blocks), dim=-1).indices                     # [c, m]
        logits = torch.einsum("chd,cmbd->chmb", q[s:e], blocks[kept]).float().relu_()
        scores = torch.einsum("chmb,ch->cmb", logits, w[s:e])               # [c, m, B]
        token = kept[:, :, None] * block + torch.arange(block, device=k.device)
        scores.masked_fill_(token > q_pos[:, :, None], float("-inf"))
        scores.flatten(1).topk(min(topk, m * block), dim=-1)


def side_by_side(label, torch_flat, torch_hisa, flops, case, digits):
    """One table row: PyTorch's times and rate, hisa's from its bench JSON case (or dashes), the ratios."""
    row = f"{label:>15} | {torch_flat:8.{digits}f}ms {flops / torch_flat * 1e-9:8.1f} | "
    if case:
        flat, tflops, hisa_ms = case["flat"]["kernels_ms"], case["flat"]["scoring_tflops"], case["hisa"]["kernels_ms"]
        row += (f"{flat:7.{digits}f}ms {tflops:8.1f} {torch_flat / flat:5.1f}x | {torch_hisa:8.{digits}f}ms "
                f"{hisa_ms:7.{digits}f}ms {torch_hisa / hisa_ms:5.1f}x | ")
    else:
        row += f"{'-':>9} {'-':>8} {'-':>6} | {torch_hisa:8.{digits}f}ms {'-':>9} {'-':>6} | "
    return row + f"{torch_flat / torch_hisa:.2f}x faster"


def hisa_bench(binary, keys, args):
    """`hisa bench --device cuda` on the same shapes, once: its sampled cases by L."""
    with tempfile.TemporaryDirectory() as tmp:
        path = os.path.join(tmp, "bench.json")
        prefill = ["--prefill", args.prefill] if args.prefill else ["--no-prefill"]
        subprocess.run([binary, "bench", "--device", "cuda", "--keys", ",".join(map(str, keys)), *prefill,
                        "--json", path, "--heads", str(args.heads), "--dim", str(args.dim),
                        "--queries", str(args.queries), "--topk", str(args.topk), "--block-size", str(args.block_size),
                        "--blocks", str(args.blocks), "--repeat", str(args.repeat)],
                       check=True, stdout=subprocess.DEVNULL)
        with open(path) as f:
            result = json.load(f)
    return {(c["shape"], c["keys"]): c for c in result["cases"]}


def main():
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--hisa", help="the hisa binary, for the side-by-side figures")
    p.add_argument("--hisa-json", help="instead of running --hisa: the JSON of a `hisa bench --device cuda --json` "
                                       "run of the same shapes on this card (e.g. scripts/gpu_check.sh's bench.json)")
    p.add_argument("--keys", default="8192,32768,65536,131072")
    p.add_argument("--queries", type=int, default=256)
    p.add_argument("--heads", type=int, default=64)
    p.add_argument("--dim", type=int, default=128)
    p.add_argument("--topk", type=int, default=2048)
    p.add_argument("--block-size", type=int, default=128)
    p.add_argument("--blocks", type=int, default=64)
    p.add_argument("--repeat", type=int, default=10)
    p.add_argument("--prefill", default="32768,65536", help="full causal prefill lengths ('' for none)")
    p.add_argument("--chunk", type=int, default=512, help="queries per chunk of the PyTorch prefill")
    args = p.parse_args()
    torch.manual_seed(0)
    dev = torch.device("cuda")
    print(f"plain PyTorch {torch.__version__} on {torch.cuda.get_device_name(dev)}: N = {args.queries} queries "
          f"seeing all L keys, H = {args.heads}, D = {args.dim}, bf16, top-{args.topk}, "
          f"HISA(B = {args.block_size}, m = {args.blocks}); medians of {args.repeat}")
    print(f"{'L':>15} | {'torch flat':>10} {'TFLOP/s':>8} | {'hisa flat':>9} {'TFLOP/s':>8} {'ratio':>6} | "
          f"{'torch HISA':>10} {'hisa HISA':>9} {'ratio':>6} | torch HISA/flat")
    lengths = [int(x) for x in args.keys.split(",")]
    if args.hisa_json:
        with open(args.hisa_json) as f:
            hisa = {(c["shape"], c["keys"]): c for c in json.load(f)["cases"]}
    else:
        hisa = hisa_bench(args.hisa, lengths, args) if args.hisa else {}
    for keys in lengths:
        q = torch.randn(args.queries, args.heads, args.dim, device=dev).to(torch.bfloat16)
        k = torch.randn(keys, args.dim, device=dev).to(torch.bfloat16)
        w = torch.randn(args.queries, args.heads, device=dev) / args.heads ** 0.5
        flops = 2.0 * args.queries * args.heads * args.dim * keys
        torch_flat = time_ms(lambda: flat_select(q, w, k, args.topk), args.repeat)
        torch_hisa = time_ms(lambda: hisa_select(q, w, k, args.topk, args.block_size, args.blocks), args.repeat)
        print(side_by_side(f"sampled {keys}", torch_flat, torch_hisa, flops, hisa.get(("sampled", keys)), 3))
        del q, k, w
        torch.cuda.empty_cache()
    # Full causal prefill: L queries, query i seeing keys [0, i]; PyTorch in chunks of --chunk queries.
    for keys in [int(x) for x in args.prefill.split(",") if x]:
        q = torch.randn(keys, args.heads, args.dim, device=dev).to(torch.bfloat16)
        k = torch.randn(keys, args.dim, device=dev).to(torch.bfloat16)
        w = torch.randn(keys, args.heads, device=dev) / args.heads ** 0.5
        flops = 2.0 * args.heads * args.dim * keys * (keys + 1) / 2
        repeat = max(2, args.repeat // 5)
        torch_flat = time_ms(lambda: causal_flat(q, w, k, args.topk, args.chunk), repeat)
        torch_hisa = time_ms(lambda: causal_hisa(q, w, k, args.topk, args.block_size, args.blocks, args.chunk), repeat)
        print(side_by_side(f"prefill {keys}", torch_flat, torch_hisa, flops, hisa.get(("prefill", keys)), 1))
        del q, k, w
        torch.cuda.empty_cache()


if __name__ == "__main__":
    main()
