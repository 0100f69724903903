"""What a transformers DSA indexer scores, derived from its forward call: q and k after RoPE, w with every factor
folded in, and the module's own top-k. One home for these derivations, shared by the capture tool
(datasets/capture/hisa_capture.py, which imports this file by path: it must run without a build) and by
`import hisa`'s forward hook (hisa.hooks). Needs torch and NumPy.

Models: `deepseek_v32` (DeepSeek-V3.2, half-split RoPE), `glm_moe_dsa` (GLM-5, interleaved RoPE) and `deepseek_v4`
(DeepSeek-V4: the indexer scores compressed key rows, one per `compress_rate` tokens).
"""
import inspect
import sys
from dataclasses import dataclass
from typing import Any, Optional

import numpy as np

ROPE = {"deepseek_v32": "half-split", "glm_moe_dsa": "interleaved", "deepseek_v4": "interleaved"}
ROPE_FUNCTION = {"deepseek_v32": "apply_rotary_pos_emb", "glm_moe_dsa": "apply_rotary_pos_emb_interleave"}
COMPRESSED = {"deepseek_v4"}  # the indexer scores compressed key rows (DeepseekV4Indexer)


class IndexerError(RuntimeError):
    """The model or its call is not one whose indexer tensors can be derived (batch > 1, a cache, ...)."""


@dataclass
class IndexerTensors:
    """One indexer call, batch row 0. q [S, H, D] and k [S or T, D] are what the scorer multiplies (after RoPE,
    in the model's dtype); weights [S, H] fp32 are the module's head weights (H^-1/2 folded in, the softmax scale
    not); w = weights · softmax_scale, every factor folded in, as a dump stores it; output [S, index_topk] the
    module's own top-k. compress_ratio: tokens per key row (1 for V3.2 / GLM-5). mask: the attention mask the
    module was given (V3.2 / GLM-5), or None."""
    layer: int
    q: Any
    k: Any
    weights: Any
    w: Any
    softmax_scale: float
    output: Any
    compress_ratio: int = 1
    mask: Optional[Any] = None


def model_type_of(model):
    model_type = model.config.model_type
    if model_type not in ROPE:
        raise IndexerError(f"model_type {model_type!r} is not a DSA model this tool knows ({', '.join(ROPE)})")
    return model_type


class IndexerHooks:
    """Hooks every indexer module of `model`; on each call (of a layer in `layers`, or every layer when None)
    derives its tensors and hands them to on_layer(IndexerTensors). close() removes the hooks."""

    def __init__(self, model, on_layer, layers=None):
        self.model_type = model_type_of(model)
        self.on_layer = on_layer
        self.layers = layers
        self.handles = []
        compressed = self.model_type in COMPRESSED
        for module in model.modules():
            name = type(module).__name__
            if name.endswith("Indexer"):
                hook = self._compressed if compressed else self._plain
                self.handles.append(module.register_forward_hook(hook, with_kwargs=True))
            if compressed and name.endswith("IndexerScorer"):
                # What the scorer is handed: q after RoPE, the compressed keys after RoPE, the hidden states.
                self.handles.append(module.register_forward_pre_hook(_keep_scorer_inputs))
        if not self.handles:
            raise IndexerError("no indexer modules found in the model")

    def close(self):
        for h in self.handles:
            h.remove()
        self.handles = []

    def _wanted(self, layer):
        return self.layers is None or layer in self.layers

    def _plain(self, module, args, kwargs, output):
        """DeepSeek-V3.2 / GLM-5 (transformers 5.x DeepseekV32Indexer / GlmMoeDsaIndexer): the module's own
        forward, step by step."""
        import torch
        layer = int(module.layer_idx)
        if not self._wanted(layer):
            return
        bound = inspect.signature(module.forward).bind(*args, **kwargs)
        hidden, q_resid = bound.arguments["hidden_states"], bound.arguments["q_resid"]
        cos, sin = bound.arguments["position_embeddings"]
        if bound.arguments.get("past_key_values") is not None:
            raise IndexerError("run the model without a cache (use_cache=False): keys must be this prompt's")
        batch, seq_len, _ = hidden.shape
        if batch != 1:
            raise IndexerError("one prompt at a time (batch size 1)")
        rope = getattr(sys.modules[type(module).__module__], ROPE_FUNCTION[self.model_type])
        mask = bound.arguments["attention_mask"]
        check_causal(mask, seq_len, layer)
        with torch.no_grad():
            q = module.wq_b(q_resid).view(batch, seq_len, module.n_heads, module.head_dim)
            rot = module.qk_rope_head_dim
            q_rot, q_pass = torch.split(q, [rot, module.head_dim - rot], dim=-1)
            k = module.k_norm(module.wk(hidden)).unsqueeze(2)
            k_rot, k_pass = torch.split(k, [rot, module.head_dim - rot], dim=-1)
            q_rot, k_rot = rope(q_rot, k_rot, cos, sin, unsqueeze_dim=2)
            q = torch.cat([q_rot, q_pass], dim=-1)[0]             # [S, H, D]
            k = torch.cat([k_rot, k_pass], dim=-1).squeeze(2)[0]  # [S, D]
            weights = module.weights_proj(hidden.to(module.weights_proj.weight.dtype)).float()[0]
            weights = weights * module.n_heads ** -0.5
            w = weights * module.softmax_scale
        self.on_layer(IndexerTensors(layer, q, k, weights, w, float(module.softmax_scale), output[0], 1, mask))

    def _compressed(self, module, args, kwargs, output):
        """DeepSeek-V4 (transformers 5.x DeepseekV4Indexer): q and the compressed keys exactly as its scorer
        receives them; w = weights_proj(x) · H^-1/2 · D^-1/2 (the scorer's softmax scale folded in)."""
        import torch
        bound = inspect.signature(module.forward).bind(*args, **kwargs)
        layer = int(bound.arguments["layer_idx"])
        if not self._wanted(layer):
            return
        if bound.arguments.get("past_key_values") is not None:
            raise IndexerError("run the model without a cache (use_cache=False): keys must be this prompt's")
        scorer = module.scorer
        q, compressed, hidden = scorer.hisa_inputs
        del scorer.hisa_inputs  # not kept past this call (GPU memory)
        if q.shape[0] != 1:
            raise IndexerError("one prompt at a time (batch size 1)")
        positions = bound.arguments["position_ids"][0]
        if not torch.equal(positions, torch.arange(positions.shape[0], device=positions.device)):
            raise IndexerError("position_ids must be 0 .. S-1 (one unpadded prompt)")
        with torch.no_grad():
            weights = scorer.weights_proj(hidden).float()[0] * scorer.weights_scaling
            w = weights * scorer.softmax_scale
        self.on_layer(IndexerTensors(layer, q[0], compressed[0], weights, w, float(scorer.softmax_scale), output[0],
                                     int(module.compress_rate)))


def _keep_scorer_inputs(module, args):
    module.hisa_inputs = args


def check_causal(mask, seq_len, layer):
    """The model's mask must be plain causal (a dump and an audit state that each query sees keys 0..q_pos):
    IndexerError for padding or any other mask."""
    import torch
    if mask is None:
        return
    m = (mask[0] if mask.dim() == 3 else mask[0, 0])[:seq_len, :seq_len]
    keys = torch.arange(seq_len, device=m.device)
    for start in range(0, seq_len, 1024):  # rows at a time: a whole [S, S] comparison is gigabytes at 128K
        rows = m[start:start + 1024]
        allowed = rows if rows.dtype == torch.bool else (rows == 0)
        causal = keys[None, :] <= torch.arange(start, start + rows.shape[0], device=m.device)[:, None]
        if not torch.equal(allowed, causal):
            raise IndexerError(f"layer {layer}: the attention mask is not plain causal (padding?)")


def query_positions(mode, seq_len, needle=None):
    """The token positions of a prompt of seq_len tokens whose queries are kept, ascending (int64): "all",
    "last:N", "every:N" (every N-th position and the last), or "needle:W" (the needle's tokens ± W and the last
    32; needle = (begin, end)). ValueError for any other spelling, and for needle:W without a needle."""
    kind, _, arg = mode.partition(":")
    try:
        n = int(arg) if arg else None
    except ValueError:
        n = None
    least = 0 if kind == "needle" else 1
    if not (kind == "all" and not arg) and (kind not in ("last", "every", "needle") or n is None or n < least):
        raise ValueError(f"queries {mode!r}: expected all, last:N, every:N (N >= 1) or needle:W (W >= 0)")
    last = seq_len - 1
    if kind == "all":
        chosen = range(seq_len)
    elif kind == "last":
        chosen = range(max(0, seq_len - n), seq_len)
    elif kind == "every":
        chosen = set(range(0, seq_len, n)) | {last}
    else:
        if needle is None:
            raise ValueError(f"queries {mode!r} needs the prompt's needle (NIAH prompts)")
        chosen = set(range(max(0, needle[0] - n), min(seq_len, needle[1] + n)))
        chosen |= set(range(max(0, seq_len - 32), seq_len))
    return np.array(sorted(chosen), dtype=np.int64)


def model_topk_ref(output_rows, positions, compress_ratio, index_topk):
    """The module's top-k rows for the queries at token `positions` as a dump's topk_ref: int32 [Nq,
    index_topk], entries the model chose among masked (-inf) keys replaced by -1 (V4 returns its own -1 for
    them), padded with -1 to index_topk (V4 picks min(index_topk, rows) entries)."""
    ref = np.asarray(output_rows)
    positions = np.asarray(positions, dtype=np.int64)
    seen = (positions + 1) // compress_ratio
    ref = np.where((ref >= 0) & (ref < seen[:, None]), ref, -1).astype(np.int32)[:, :index_topk]
    if ref.shape[1] < index_topk:
        ref = np.pad(ref, ((0, 0), (0, index_topk - ref.shape[1])), constant_values=-1)
    return ref
