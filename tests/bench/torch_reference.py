#!/usr/bin/env python3
"""Plain-PyTorch flat DSA and HISA selection — what a user would write — timed on the same card and in the same
command as `hisa bench --device cuda`, so every figure has a side-by-side ratio (issue #5).

Shape as in `hisa bench`: N queries that each see all L keys (decode), H heads, D dims, bf16 q and k, fp32
weights, k-of-L top-k; HISA with B-token blocks (mean-pooled keys), m blocks kept with the first and last block
forced (in-budget), then the exact top-k of the kept blocks' tokens.

Usage: tests/bench/torch_reference.py --hisa build/cli/hisa [--keys 8192,32768,65536,131072] [--queries 256]
"""
import argparse
import re
import statistics
import subprocess

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


def hisa_bench(binary, keys, args):
    """The `hisa bench --device cuda` figures for the same shape: flat kernels and HISA stages, in ms."""
    out = subprocess.run([binary, "bench", "--device", "cuda", "--keys", str(keys), "--heads", str(args.heads),
                          "--dim", str(args.dim), "--queries", str(args.queries), "--topk", str(args.topk),
                          "--block-size", str(args.block_size), "--blocks", str(args.blocks)],
                         check=True, capture_output=True, text=True).stdout
    flat = float(re.search(r"flat total \(scoring \+ top-k\)\s+([0-9.]+) ms", out).group(1))
    hisa = float(re.search(r"top-k [0-9.]+ ms = ([0-9.]+) ms \(", out).group(1))
    tflops = float(re.search(r"tensor cores \(bf16 mma.sync\)\s+[0-9.]+ ms\s+([0-9.]+) TFLOP/s", out).group(1))
    return flat, hisa, tflops


def main():
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--hisa", help="the hisa binary, for the side-by-side figures")
    p.add_argument("--keys", default="8192,32768,65536,131072")
    p.add_argument("--queries", type=int, default=256)
    p.add_argument("--heads", type=int, default=64)
    p.add_argument("--dim", type=int, default=128)
    p.add_argument("--topk", type=int, default=2048)
    p.add_argument("--block-size", type=int, default=128)
    p.add_argument("--blocks", type=int, default=64)
    p.add_argument("--repeat", type=int, default=10)
    args = p.parse_args()
    torch.manual_seed(0)
    dev = torch.device("cuda")
    print(f"plain PyTorch {torch.__version__} on {torch.cuda.get_device_name(dev)}: N = {args.queries} queries "
          f"seeing all L keys, H = {args.heads}, D = {args.dim}, bf16, top-{args.topk}, "
          f"HISA(B = {args.block_size}, m = {args.blocks}); medians of {args.repeat}")
    print(f"{'L':>7} | {'torch flat':>10} {'TFLOP/s':>8} | {'hisa flat':>9} {'TFLOP/s':>8} {'ratio':>6} | "
          f"{'torch HISA':>10} {'hisa HISA':>9} {'ratio':>6} | torch HISA/flat")
    for keys in (int(x) for x in args.keys.split(",")):
        q = torch.randn(args.queries, args.heads, args.dim, device=dev).to(torch.bfloat16)
        k = torch.randn(keys, args.dim, device=dev).to(torch.bfloat16)
        w = torch.randn(args.queries, args.heads, device=dev) / args.heads ** 0.5
        flops = 2.0 * args.queries * args.heads * args.dim * keys
        torch_flat = time_ms(lambda: flat_select(q, w, k, args.topk), args.repeat)
        torch_hisa = time_ms(lambda: hisa_select(q, w, k, args.topk, args.block_size, args.blocks), args.repeat)
        row = f"{keys:>7} | {torch_flat:8.3f}ms {flops / torch_flat * 1e-9:8.1f} | "
        if args.hisa:
            flat, hisa, tflops = hisa_bench(args.hisa, keys, args)
            row += (f"{flat:7.3f}ms {tflops:8.1f} {torch_flat / flat:5.1f}x | {torch_hisa:8.3f}ms {hisa:7.3f}ms "
                    f"{torch_hisa / hisa:5.1f}x | ")
        else:
            row += f"{'-':>9} {'-':>8} {'-':>6} | {torch_hisa:8.3f}ms {'-':>9} {'-':>6} | "
        print(row + f"{torch_flat / torch_hisa:.2f}x faster")
        del q, k, w
        torch.cuda.empty_cache()


if __name__ == "__main__":
    main()
