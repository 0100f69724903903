"""Reference selections in plain PyTorch (CPU or CUDA tensors): flat DSA top-k, HISA and the block-sparse
baseline, exactly by the rules of docs/definitions.md (the same rules as src/select/reference.cpp):

    I[t, s] = k_scale[s] · Σ_h w[t, h] · ReLU(q[t, h] · k[s])     in fp32, for k_start[t] <= s <= q_pos[t]

Order: higher score first, equal scores by lower position; a NaN score is -inf. HISA: pooled key of block b
= mean of k[s]·k_scale[s] over the block's positions that exist (summed in ascending position order in fp32;
optionally re-quantised to e4m3 with scale max(absmax/448, 1e-10)); J[t, b] = scale_b · Σ_h w·ReLU(q·k̄_b);
eligible blocks ⌊k_start/B⌋..⌊q_pos/B⌋, forced = the first and last of them; keep m blocks ("in-budget":
forced + the best m - #forced others; "extra": forced ∪ the best m), every eligible one when at most m; then
the top-k visible tokens of the kept blocks. Block-sparse: every visible token of m = ⌈k/B⌉ kept blocks.

Every function returns an int32 tensor [Nq, width] on the inputs' device, positions ascending, -1 padded;
width is topk, or for block_sparse_select the largest selection. Queries are processed in chunks so that
about `max_elements` fp32 values of [queries, heads, keys] are alive at once.

Used by datasets/capture/hisa_capture.py (--ref-rule) to write a topk_ref that follows a declared rule.
"""
import contextlib
import math

import torch

METHODS = ("flat", "hisa", "block-sparse")
FORCED = ("in-budget", "extra")
POOL_PRECISIONS = ("fp32", "fp8")
DEFAULT_MAX_ELEMENTS = 1 << 26  # 256 MiB of fp32 per chunk of [queries, heads, keys]


# ----- inputs --------------------------------------------------------------------------------------------------

def _inputs(q, k, w, q_pos, k_start, k_scale):
    """Decoded values as fp32 on one device, positions as int64; checks shapes and ranges."""
    q = torch.as_tensor(q)
    device = q.device
    q = q.to(torch.float32)
    k = torch.as_tensor(k).to(device=device, dtype=torch.float32)
    w = torch.as_tensor(w).to(device=device, dtype=torch.float32)
    q_pos = torch.as_tensor(q_pos).to(device=device, dtype=torch.int64)
    if q.dim() != 3:
        raise ValueError(f"q must be [Nq, H, D], got shape {tuple(q.shape)}")
    nq, heads, dim = q.shape
    if k.dim() != 2 or k.shape[1] != dim or k.shape[0] < 1:
        raise ValueError(f"k must be [L, {dim}] with L >= 1, got shape {tuple(k.shape)}")
    length = k.shape[0]
    if tuple(w.shape) != (nq, heads):
        raise ValueError(f"w must be [{nq}, {heads}], got shape {tuple(w.shape)}")
    if tuple(q_pos.shape) != (nq,):
        raise ValueError(f"q_pos must be [{nq}], got shape {tuple(q_pos.shape)}")
    if k_start is None:
        k_start = torch.zeros_like(q_pos)
    else:
        k_start = torch.as_tensor(k_start).to(device=device, dtype=torch.int64)
        if tuple(k_start.shape) != (nq,):
            raise ValueError(f"k_start must be [{nq}], got shape {tuple(k_start.shape)}")
    if k_scale is not None:
        k_scale = torch.as_tensor(k_scale).to(device=device, dtype=torch.float32)
        if tuple(k_scale.shape) != (length,):
            raise ValueError(f"k_scale must be [{length}], got shape {tuple(k_scale.shape)}")
    if nq and (bool((q_pos < 0).any()) or bool((q_pos >= length).any())):
        raise ValueError(f"q_pos must lie in [0, {length})")
    if nq and (bool((k_start < 0).any()) or bool((k_start > q_pos).any())):
        raise ValueError("k_start must lie in [0, q_pos]")
    return q, k, w, q_pos, k_start, k_scale


def _check_selection(topk, block_size=1, blocks=1, forced="in-budget", pool_precision="fp32"):
    for name, value in (("topk", topk), ("block_size", block_size), ("blocks", blocks)):
        if isinstance(value, bool) or int(value) != value or value < 1:
            raise ValueError(f"{name} must be an integer >= 1, got {value!r}")
    if forced not in FORCED:
        raise ValueError(f"forced must be one of {', '.join(FORCED)}, got {forced!r}")
    if pool_precision not in POOL_PRECISIONS:
        raise ValueError(f"pool_precision must be one of {', '.join(POOL_PRECISIONS)}, got {pool_precision!r}")


@contextlib.contextmanager
def _full_fp32_matmul():
    """fp32 products and sums on the GPU too (no TF32), restored afterwards."""
    previous = torch.get_float32_matmul_precision()
    torch.set_float32_matmul_precision("highest")
    try:
        yield
    finally:
        torch.set_float32_matmul_precision(previous)


def _chunks(q_pos, k_start, per_key, max_elements):
    """Row ranges [a, b) whose [rows, keys from min k_start to max q_pos] work, rows · keys · per_key, stays
    near max_elements (one row at least)."""
    q_pos, k_start = q_pos.tolist(), k_start.tolist()
    a = 0
    while a < len(q_pos):
        b, lo, hi = a, k_start[a], q_pos[a]
        while b < len(q_pos):
            lo2, hi2 = min(lo, k_start[b]), max(hi, q_pos[b])
            if b > a and (b + 1 - a) * (hi2 - lo2 + 1) * per_key > max_elements:
                break
            lo, hi, b = lo2, hi2, b + 1
        yield a, b
        a = b


# ----- scores --------------------------------------------------------------------------------------------------

def _head_sum(q, w, keys):
    """Σ_h w[t,h]·ReLU(q[t,h]·key[s]) in fp32: q [C,H,D], w [C,H], keys [n,D] -> [C,n]."""
    c, heads, dim = q.shape
    dots = (q.reshape(c * heads, dim) @ keys.T).reshape(c, heads, -1)
    return torch.bmm(w.unsqueeze(1), torch.relu(dots)).squeeze(1)


def _nan_to_minus_inf(x):
    return x.masked_fill(torch.isnan(x), float("-inf"))


def token_scores(q, k, w, k_scale, lo, hi):
    """I[t, s] for s in [lo, hi): [C, hi - lo], NaN as -inf (q, w: a chunk of queries)."""
    scores = _head_sum(q, w, k[lo:hi])
    if k_scale is not None:
        scores = k_scale[lo:hi].unsqueeze(0) * scores
    return _nan_to_minus_inf(scores)


def pooled_keys(k, k_scale=None, block_size=128, pool_precision="fp32"):
    """(k̄ [nb, D], scale [nb]): per block of B positions, the mean of k[s]·k_scale[s] over the positions that
    exist (summed in ascending position order in fp32), optionally re-quantised to e4m3 (scale 1 for fp32)."""
    length, dim = k.shape
    nb = -(-length // block_size)
    kv = k.to(torch.float32)
    if k_scale is not None:
        kv = kv * k_scale.to(torch.float32).unsqueeze(1)
    kv = torch.nn.functional.pad(kv, (0, 0, 0, nb * block_size - length)).reshape(nb, block_size, dim)
    total = torch.zeros((nb, dim), dtype=torch.float32, device=k.device)
    for j in range(block_size):  # ascending position order; the padding adds +0, which changes nothing
        total = total + kv[:, j, :]
    counts = torch.full((nb, 1), float(block_size), dtype=torch.float32, device=k.device)
    counts[-1, 0] = float(length - (nb - 1) * block_size)
    mean = total / counts
    scale = torch.ones(nb, dtype=torch.float32, device=k.device)
    if pool_precision == "fp8":
        absmax = mean.abs().amax(dim=1)
        scale = torch.maximum(absmax / torch.full_like(absmax, 448.0), torch.full_like(absmax, 1e-10))
        codes = torch.clamp(mean / scale.unsqueeze(1), -448.0, 448.0).to(torch.float8_e4m3fn)
        mean = codes.to(torch.float32)
    return mean, scale


# ----- selection -----------------------------------------------------------------------------------------------

def _best(scores, candidates, count):
    """Mask of the count[i] best candidates of each row (all of them when fewer): higher score first, equal
    scores by lower column. scores [C, n] without NaN, candidates [C, n] bool, count [C] int64."""
    take = torch.minimum(count, candidates.sum(dim=1))
    kmax = int(take.max()) if take.numel() else 0
    if kmax == 0:
        return torch.zeros_like(candidates)
    masked = scores.masked_fill(~candidates, float("-inf"))
    top = torch.topk(masked, kmax, dim=1, largest=True, sorted=True).values
    cut = top.gather(1, (take - 1).clamp_min(0).unsqueeze(1))  # the take-th best score of the row
    above = candidates & (masked > cut)
    equal = candidates & (masked == cut)
    need = take.unsqueeze(1) - above.sum(dim=1, keepdim=True)
    chosen = above | (equal & (torch.cumsum(equal.to(torch.int64), dim=1) <= need))
    return chosen & (take > 0).unsqueeze(1)


def _positions(mask, offset, width):
    """Ascending positions (offset + column) of each row's mask, -1 padded to width: int64 [C, width]."""
    rows, n = mask.shape
    out = torch.full((rows, width + 1), -1, dtype=torch.int64, device=mask.device)
    rank = torch.cumsum(mask.to(torch.int64), dim=1) - 1
    column = torch.where(mask, rank, torch.full_like(rank, width))  # unselected go to a spare column
    positions = (offset + torch.arange(n, device=mask.device, dtype=torch.int64)).expand(rows, n).contiguous()
    out.scatter_(1, column, positions)
    return out[:, :width]


def _kept_blocks(j, first, last, b0, blocks, forced):
    """Mask [C, nbc] of kept blocks b0 + column, from block scores j [C, nbc] (NaN already -inf)."""
    b = b0 + torch.arange(j.shape[1], device=j.device, dtype=torch.int64).unsqueeze(0)
    eligible = (b >= first.unsqueeze(1)) & (b <= last.unsqueeze(1))
    is_forced = (b == first.unsqueeze(1)) | (b == last.unsqueeze(1))
    all_fit = (last - first + 1) <= blocks
    if forced == "in-budget":
        # Forced blocks first (the lower one alone when m = 1), then the best m - #forced others by J.
        # When more than m blocks are eligible, first < last, so #forced = 2.
        forced_kept = is_forced if blocks >= 2 else (b == first.unsqueeze(1))
        others = _best(j, eligible & ~is_forced, torch.full_like(first, max(blocks - 2, 0)))
        kept = forced_kept | others
    else:  # extra: the forced blocks ∪ the best m of all eligible blocks
        kept = is_forced | _best(j, eligible, torch.full_like(first, blocks))
    return torch.where(all_fit.unsqueeze(1), eligible, kept & eligible)


def _select(q, k, w, q_pos, k_start, k_scale, method, topk, block_size, blocks, forced, pool_precision,
            max_elements):
    q, k, w, q_pos, k_start, k_scale = _inputs(q, k, w, q_pos, k_start, k_scale)
    nq, heads, _ = q.shape
    device = q.device
    if method != "flat":
        pooled, scale = pooled_keys(k, k_scale, block_size, pool_precision)
    parts = []  # (first row, int32 positions) per chunk
    with _full_fp32_matmul(), torch.no_grad():
        for a, b in _chunks(q_pos, k_start, heads + 2, max_elements):
            qc, wc, qp, ks = q[a:b], w[a:b], q_pos[a:b], k_start[a:b]
            lo, hi = int(ks.min()), int(qp.max()) + 1
            scores = token_scores(qc, k, wc, k_scale, lo, hi)
            pos = lo + torch.arange(hi - lo, device=device, dtype=torch.int64).unsqueeze(0)
            candidates = (pos >= ks.unsqueeze(1)) & (pos <= qp.unsqueeze(1))
            if method != "flat":
                first, last = ks // block_size, qp // block_size
                b0, b1 = int(first.min()), int(last.max()) + 1
                j = _head_sum(qc, wc, pooled[b0:b1])
                if pool_precision == "fp8":
                    j = scale[b0:b1].unsqueeze(0) * j
                kept = _kept_blocks(_nan_to_minus_inf(j), first, last, b0, blocks, forced)
                candidates &= kept.gather(1, (pos // block_size - b0).expand_as(candidates))
            if method == "block-sparse":
                chosen, width = candidates, int(candidates.sum(dim=1).max())
            else:
                chosen, width = _best(scores, candidates, torch.full((b - a,), topk, dtype=torch.int64,
                                                                     device=device)), topk
            parts.append((a, _positions(chosen, lo, width).to(torch.int32)))
        width = topk if method != "block-sparse" else max([p.shape[1] for _, p in parts] or [0])
        out = torch.full((nq, width), -1, dtype=torch.int32, device=device)
        for a, p in parts:
            out[a:a + p.shape[0], :p.shape[1]] = p
    return out


# ----- the three rules -----------------------------------------------------------------------------------------

def flat_select(q, k, w, q_pos, k_start=None, k_scale=None, topk=2048, max_elements=DEFAULT_MAX_ELEMENTS):
    """Flat DSA: the topk best visible keys of each query (all of them when fewer). int32 [Nq, topk]."""
    _check_selection(topk)
    return _select(q, k, w, q_pos, k_start, k_scale, "flat", int(topk), 1, 1, "in-budget", "fp32", max_elements)


def hisa_select(q, k, w, q_pos, k_start=None, k_scale=None, topk=2048, block_size=128, blocks=64,
                forced="in-budget", pool_precision="fp32", max_elements=DEFAULT_MAX_ELEMENTS):
    """HISA(B = block_size, m = blocks): the topk best visible tokens of the kept blocks. int32 [Nq, topk]."""
    _check_selection(topk, block_size, blocks, forced, pool_precision)
    return _select(q, k, w, q_pos, k_start, k_scale, "hisa", int(topk), int(block_size), int(blocks), forced,
                   pool_precision, max_elements)


def block_sparse_select(q, k, w, q_pos, k_start=None, k_scale=None, topk=2048, block_size=128, blocks=None,
                        forced="in-budget", pool_precision="fp32", max_elements=DEFAULT_MAX_ELEMENTS):
    """Block-sparse: every visible token of the kept blocks, m = blocks or ⌈topk/B⌉. int32 [Nq, width], width
    the largest selection."""
    if blocks is None:
        blocks = math.ceil(int(topk) / int(block_size)) if int(block_size) >= 1 else 0
    _check_selection(topk, block_size, blocks, forced, pool_precision)
    return _select(q, k, w, q_pos, k_start, k_scale, "block-sparse", int(topk), int(block_size), int(blocks),
                   forced, pool_precision, max_elements)


def select(method, q, k, w, q_pos, k_start=None, k_scale=None, topk=2048, block_size=128, blocks=None,
           forced="in-budget", pool_precision="fp32", max_elements=DEFAULT_MAX_ELEMENTS):
    """One of METHODS by name; blocks None means 64 for hisa and ⌈topk/B⌉ for block-sparse."""
    if method == "flat":
        return flat_select(q, k, w, q_pos, k_start, k_scale, topk, max_elements)
    if method == "hisa":
        return hisa_select(q, k, w, q_pos, k_start, k_scale, topk, block_size, 64 if blocks is None else blocks,
                           forced, pool_precision, max_elements)
    if method == "block-sparse":
        return block_sparse_select(q, k, w, q_pos, k_start, k_scale, topk, block_size, blocks, forced,
                                   pool_precision, max_elements)
    raise ValueError(f"method must be one of {', '.join(METHODS)}, got {method!r}")
