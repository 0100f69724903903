#!/usr/bin/env python3
"""What a user would write instead of `hisa audit`: h5py + PyTorch on the GPU, per layer flat DSA top-k, HISA(B, m)
top-k (mean-pooled keys, first and last block forced into the budget) and each query's IoU between the two.

It reads a dump (datasets/FORMAT.md, bf16 q and k as hisa synth writes them) layer by layer: q and k as raw
bfloat16 bits (no HDF5 conversion), uploaded and scored in bf16 with fp32 weights, queries in chunks so the
[chunk, H, L] logits fit. Prints per layer the mean IoU, and the time spent reading + uploading and computing.

Usage: tests/bench/audit_torch.py DUMP [--topk 2048] [--block-size 128] [--blocks 64] [--chunk 32]
"""
import argparse
import time

import h5py
import numpy as np
import torch


def read_bf16(dset):
    """A bfloat16 dataset (custom HDF5 float or uint16 bits) as a torch bfloat16 tensor, without conversion."""
    bits = np.empty(dset.shape, dtype=np.uint16)
    if dset.dtype == np.uint16 or dset.dtype == np.int16:
        dset.read_direct(bits)
    else:
        dset.id.read(h5py.h5s.ALL, h5py.h5s.ALL, bits, mtype=dset.id.get_type())
    return torch.from_numpy(bits.view(np.int16)).view(torch.bfloat16)


def layer_iou(q, w, k, q_pos, topk, block, m, chunk):
    """Mean over the queries of |flat ∩ hisa| / |flat ∪ hisa|."""
    n_keys, dim = k.shape
    n_blocks = (n_keys + block - 1) // block
    padded = torch.zeros(n_blocks * block, dim, device=k.device, dtype=torch.float32)
    padded[:n_keys] = k.float()
    counts = torch.full((n_blocks,), float(block), device=k.device)
    counts[-1] = n_keys - (n_blocks - 1) * block
    pooled = padded.view(n_blocks, block, dim).sum(dim=1) / counts[:, None]
    positions = torch.arange(n_keys, device=k.device)
    block_ids = torch.arange(n_blocks, device=k.device)
    ious = []
    for c in range(0, q.shape[0], chunk):
        qc, wc, pc = q[c:c + chunk], w[c:c + chunk], q_pos[c:c + chunk]
        logits = torch.einsum("nhd,ld->nhl", qc, k).float().relu_()
        scores = torch.einsum("nhl,nh->nl", logits, wc)
        scores.masked_fill_(positions[None, :] > pc[:, None], float("-inf"))
        kk = min(topk, n_keys)
        flat = scores.topk(kk, dim=-1)
        flat_idx = flat.indices.masked_fill(flat.values == float("-inf"), -1)
        # HISA: J per block, forced first and last eligible block, the m best blocks, top-k of their tokens.
        j = torch.einsum("nhd,bd->nhb", qc.float(), pooled).relu_()
        j = torch.einsum("nhb,nh->nb", j, wc)
        last = pc // block
        j.masked_fill_(block_ids[None, :] > last[:, None], float("-inf"))
        j[:, 0] = float("inf")
        j.scatter_(1, last[:, None], float("inf"))
        kept = j.topk(min(m, n_blocks), dim=-1)
        kept_idx = kept.indices.masked_fill(kept.values == float("-inf"), 0)
        mask = torch.zeros(scores.shape[0], n_blocks, device=k.device, dtype=torch.bool)
        mask.scatter_(1, kept_idx, kept.values != float("-inf"))
        keep = mask.repeat_interleave(block, dim=1)[:, :n_keys]
        hisa = scores.masked_fill(~keep, float("-inf")).topk(kk, dim=-1)
        hisa_idx = hisa.indices.masked_fill(hisa.values == float("-inf"), -2)
        # IoU of the two index sets per query.
        common = (flat_idx[:, :, None] == hisa_idx[:, None, :]).any(dim=-1) & (flat_idx >= 0)
        inter = common.sum(dim=-1).float()
        union = (flat_idx >= 0).sum(dim=-1) + (hisa_idx >= 0).sum(dim=-1) - inter
        ious.append(torch.where(union > 0, inter / union, torch.ones_like(union)))
    return torch.cat(ious).mean().item()


def main():
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("dump")
    ap.add_argument("--topk", type=int, default=2048)
    ap.add_argument("--block-size", type=int, default=128)
    ap.add_argument("--blocks", type=int, default=64)
    ap.add_argument("--chunk", type=int, default=32)
    a = ap.parse_args()
    t_start = time.perf_counter()
    reading = computing = 0.0
    dev = torch.device("cuda")
    with h5py.File(a.dump, "r") as f:
        for sample in f:
            layers = sorted((g for g in f[sample] if g.startswith("layer_")), key=lambda g: int(g[6:]))
            for name in layers:
                g = f[sample][name]
                t0 = time.perf_counter()
                k = read_bf16(g["k"]).to(dev, non_blocking=True)
                q = read_bf16(g["q"]).to(dev, non_blocking=True)
                w = torch.from_numpy(g["w"][...]).to(dev)
                q_pos = torch.from_numpy(g["q_pos"][...]).to(dev)
                torch.cuda.synchronize()
                t1 = time.perf_counter()
                iou = layer_iou(q, w, k, q_pos, a.topk, a.block_size, a.blocks, a.chunk)
                t2 = time.perf_counter()
                reading += t1 - t0
                computing += t2 - t1
                print(f"{sample} {name}: {q.shape[0]} queries, mean HISA IoU {iou:.4f}", flush=True)
    total = time.perf_counter() - t_start
    print(f"torch script: total {total:.2f} s (reading + uploading {reading:.2f} s, computing {computing:.2f} s) on "
          f"{torch.cuda.get_device_name()}")


if __name__ == "__main__":
    main()
