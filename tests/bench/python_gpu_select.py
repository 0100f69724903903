"""hisa.select and hisa.audit_layer on CUDA tensors (read where they are) beside the same calls on tensors copied
through the host, and hisa.select beside the plain PyTorch flat top-k a user would write, in one run on one GPU
(docs/benchmarks.md). hisa's two paths are checked to give the same results first. Wall clocks, median of --reps after a warm-up, GPU synchronised.

    PYTHONPATH=build/python python3 tests/bench/python_gpu_select.py [--keys 65536] [--queries 2048] [--reps 5]
"""
import argparse
import time

import numpy as np
import torch

import hisa


def timed(f, reps):
    f()  # warm-up
    torch.cuda.synchronize()
    best = []
    for _ in range(reps):
        t0 = time.perf_counter()
        f()
        torch.cuda.synchronize()
        best.append(time.perf_counter() - t0)
    return float(np.median(best))


def torch_flat(q, k, w, q_pos, topk):
    """Flat DSA top-k as a user writes it: scores Σ_h w·ReLU(q·k), causal mask, topk, in query blocks."""
    out = []
    kf = k.float()
    for i in range(0, q.shape[0], 256):
        s = torch.relu(torch.einsum("nhd,ld->nhl", q[i:i + 256].float(), kf))
        s = (s * w[i:i + 256, :, None]).sum(1)
        pos = torch.arange(k.shape[0], device=q.device)
        s = s.masked_fill(pos[None, :] > q_pos[i:i + 256, None].to(q.device), float("-inf"))
        out.append(torch.topk(s, topk, dim=1).indices)
    return torch.cat(out)


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--keys", type=int, default=65536)
    ap.add_argument("--queries", type=int, default=2048)
    ap.add_argument("--heads", type=int, default=64)
    ap.add_argument("--dim", type=int, default=128)
    ap.add_argument("--topk", type=int, default=2048)
    ap.add_argument("--reps", type=int, default=5)
    a = ap.parse_args()
    g = torch.Generator().manual_seed(0)
    L, Nq, H, D = a.keys, a.queries, a.heads, a.dim
    k = torch.randint(-8, 9, (L, D), generator=g).to(torch.bfloat16)
    q = torch.randint(-8, 9, (Nq, H, D), generator=g).to(torch.bfloat16)
    w = torch.randint(-2, 4, (Nq, H), generator=g).float()
    q_pos = torch.sort(torch.randint(a.topk, L, (Nq,), generator=g)).values
    q_pos[-1] = L - 1
    qg, kg, wg = q.cuda(), k.cuda(), w.cuda()
    print(f"{torch.cuda.get_device_name()}: {Nq} queries x {H} heads x D {D} against {L} keys, bf16, top-{a.topk}")
    for method in ("flat", "hisa"):
        on_gpu = hisa.select(qg, kg, wg, q_pos, method=method, topk=a.topk)
        via_host = hisa.select(q, k, w, q_pos, method=method, topk=a.topk, device="cuda")
        assert torch.equal(on_gpu.cpu(), via_host), method
        t_gpu = timed(lambda: hisa.select(qg, kg, wg, q_pos, method=method, topk=a.topk), a.reps)
        t_host = timed(lambda: hisa.select(qg.cpu(), kg.cpu(), wg.cpu(), q_pos, method=method, topk=a.topk,
                                           device="cuda").cuda(), a.reps)
        print(f"  hisa.select {method:4s}: CUDA tensors read in place {t_gpu * 1e3:8.1f} ms; copied through the host "
              f"{t_host * 1e3:8.1f} ms ({t_host / t_gpu:.2f}x)")
    # The audit of the layer (engine audit, certificates' bounds, per-query metrics), in place and through the host.
    a_gpu, _ = hisa.audit_layer(qg, kg, wg, q_pos, topk=a.topk)
    a_host, _ = hisa.audit_layer(q, k, w, q_pos, topk=a.topk, device="cuda")
    assert a_gpu == a_host
    t_gpu = timed(lambda: hisa.audit_layer(qg, kg, wg, q_pos, topk=a.topk), a.reps)
    t_host = timed(lambda: hisa.audit_layer(qg.cpu(), kg.cpu(), wg.cpu(), q_pos, topk=a.topk, device="cuda"), a.reps)
    print(f"  hisa.audit_layer: CUDA tensors read in place {t_gpu * 1e3:8.1f} ms; copied through the host "
          f"{t_host * 1e3:8.1f} ms ({t_host / t_gpu:.2f}x)")
    t_torch = timed(lambda: torch_flat(qg, kg, wg, q_pos, a.topk), a.reps)
    t_gpu = timed(lambda: hisa.select(qg, kg, wg, q_pos, method="flat", topk=a.topk), a.reps)
    print(f"  plain PyTorch flat top-k (fp32 einsum, masked topk) {t_torch * 1e3:8.1f} ms; hisa.select flat "
          f"{t_gpu * 1e3:8.1f} ms ({t_torch / t_gpu:.2f}x)")


if __name__ == "__main__":
    main()
