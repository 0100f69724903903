#!/usr/bin/env python3
"""Capture the DSA lightning indexer's tensors from a transformers model into a hisa v1 dump.

Runs a `deepseek_v32` (DeepSeek-V3.2, half-split RoPE), `glm_moe_dsa` (GLM-5, interleaved RoPE) or `deepseek_v4`
(DeepSeek-V4: the indexer scores compressed keys, one row per 4 tokens; interleaved RoPE on the trailing slice) model —
a local checkpoint directory, or a tiny randomly initialised config for tests (nothing is downloaded) — on
NIAH and/or LongBench-style prompts, hooks every indexer module that runs, and writes per layer exactly the
q and k the indexer scores (after RoPE), w with every factor folded in (H^-1/2 and the softmax scale D^-1/2),
q_pos, and topk_ref = the indices the model's own indexer returned, or with --ref-rule the selection of a
declared rule (flat, hisa, block-sparse; hisa_reference.py) recomputed from the stored q, k and w, with the
rule recorded in topk_ref's attributes. See datasets/FORMAT.md, "Capturing from a real model".

Every layer is checked while it is captured: the top-k recomputed from the derived q, k and weights must be
the module's own output (tie-aware), and the folded w must reproduce the module's scores, so a capture bug
cannot pass silently.

    python3 datasets/capture/hisa_capture.py --tiny deepseek_v32 --niah 512:50 -o dsv32_tiny.h5
    python3 datasets/capture/hisa_capture.py --checkpoint /models/DeepSeek-V3.2 --device cuda \\
        --niah 32768:25 --niah 32768:75 --queries needle:64 --layers 0,10,20 -o dsv32_niah.h5
"""
import argparse
import os
import sys

import numpy as np

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, os.path.join(HERE, ".."))
sys.path.insert(0, HERE)
# The indexer derivations and the query positions live with `import hisa` (python/hisa/indexer_tensors.py,
# torch and NumPy); imported as a plain file, so that this tool needs no build.
sys.path.insert(0, os.path.join(HERE, "..", "..", "python", "hisa"))
import h5py  # noqa: E402
import prompts  # noqa: E402
from hisa_h5 import write_array, write_bfloat16_bits, write_topk_ref  # noqa: E402
from indexer_tensors import (COMPRESSED, ROPE, IndexerError, IndexerHooks, model_topk_ref,  # noqa: E402
                             query_positions)


class CaptureError(IndexerError):
    pass


# ----- models ----------------------------------------------------------------------------------------------

def tiny_config(model_type, index_topk, layers):
    """A tiny config of the real architecture. index_head_dim 64 and 4 heads make the folded factors
    D^-1/2 = 1/8 and H^-1/2 = 1/2 powers of two, so folding them into w is exact."""
    from transformers import AutoConfig
    if model_type == "deepseek_v4":
        # Every layer compressed sparse attention (so every layer has an indexer), plain MoE (hash routing needs
        # a token table), one KV head as V4 has.
        return AutoConfig.for_model(
            model_type, vocab_size=512, hidden_size=64, moe_intermediate_size=32, num_hidden_layers=layers,
            num_attention_heads=4, num_key_value_heads=1, head_dim=32, q_lora_rank=32, o_groups=2, o_lora_rank=16,
            n_routed_experts=4, num_experts_per_tok=2, n_shared_experts=1, index_topk=index_topk, index_head_dim=64,
            index_n_heads=4, layer_types=["compressed_sparse_attention"] * layers, mlp_layer_types=["moe"] * layers,
            max_position_embeddings=16384)
    return AutoConfig.for_model(
        model_type, vocab_size=512, hidden_size=64, intermediate_size=128, moe_intermediate_size=32,
        num_hidden_layers=layers, num_attention_heads=4, num_key_value_heads=4, n_shared_experts=1,
        n_routed_experts=4, num_experts_per_tok=2, n_group=1, topk_group=1, kv_lora_rank=16, q_lora_rank=32,
        qk_rope_head_dim=16, qk_nope_head_dim=16, v_head_dim=16, index_topk=index_topk, index_head_dim=64,
        index_n_heads=4, first_k_dense_replace=1, max_position_embeddings=16384)


def load_model(args):
    import torch
    from transformers import AutoModelForCausalLM
    dtype = {"bf16": torch.bfloat16, "f32": torch.float32}[args.model_dtype]
    if args.checkpoint:
        from transformers import AutoTokenizer
        model = AutoModelForCausalLM.from_pretrained(args.checkpoint, dtype=dtype, attn_implementation="eager")
        tokenizer = AutoTokenizer.from_pretrained(args.checkpoint)
        name = os.path.basename(os.path.normpath(args.checkpoint))
    else:
        torch.manual_seed(args.seed)
        config = tiny_config(args.tiny, args.index_topk, args.tiny_layers)
        model = AutoModelForCausalLM.from_config(config, attn_implementation="eager").to(dtype)
        tokenizer = prompts.HashTokenizer(config.vocab_size)
        name = f"{args.tiny}-tiny-random"
    model_type = model.config.model_type
    if model_type not in ROPE:
        raise CaptureError(f"model_type {model_type!r} is not a DSA model this tool knows ({', '.join(ROPE)})")
    return model.to(args.device).eval(), tokenizer, name


# ----- the hook --------------------------------------------------------------------------------------------

class IndexerCapture:
    """Hooks every indexer module (indexer_tensors.IndexerHooks); on each call checks the derived q, k, w of the
    chosen query rows against the module's own top-k, and keeps them (on the CPU) until the sample is written."""

    def __init__(self, model, layers):
        self.positions = None
        self.captured = {}
        self.checks = {}
        self.hooks = IndexerHooks(model, self.keep, layers)

    def close(self):
        self.hooks.close()

    def keep(self, t):
        import torch
        with torch.no_grad():
            sel = torch.as_tensor(self.positions, device=t.q.device)
            if t.compress_ratio > 1 or self.hooks.model_type in COMPRESSED:
                self.check_compressed(t.layer, t.q, t.k, t.weights, t.w, t.softmax_scale, t.output, sel,
                                      t.compress_ratio)
            else:
                self.check(t.layer, t.q, t.k, t.weights, t.w, t.softmax_scale, t.output, sel)
            self.captured[t.layer] = {
                "q": t.q[sel].cpu(), "k": t.k.cpu(), "w": t.w[sel].cpu(),
                "topk_ref": t.output[sel].to(torch.int64).cpu(), "compress_ratio": t.compress_ratio,
            }

    def check_compressed(self, layer, q, k, weights, w, softmax_scale, output, sel, c):
        """As check(), over the rows each query may see: j < floor((t+1)/c)."""
        import torch
        dots = torch.einsum("shd,td->sht", q[sel].float(), k.float())
        scores = torch.einsum("sh,sht->st", weights[sel], torch.relu(dots * softmax_scale))
        folded = torch.einsum("sh,sht->st", w[sel], torch.relu(dots))
        seen = (sel + 1) // c
        visible = torch.arange(k.shape[0], device=k.device)[None, :] < seen[:, None]
        if visible.any():
            scale = scores[visible].abs().max().clamp_min(1e-30)
            if (folded - scores)[visible].abs().max() > 1e-5 * scale:
                raise CaptureError(f"layer {layer}: w with folded factors does not reproduce the module's scores")
        self.checks[layer] = compare_topk(scores.masked_fill(~visible, float("-inf")), output[sel], seen)

    def check(self, layer, q, k, weights, w, softmax_scale, output, sel):
        """The derived tensors must give the module's own top-k, and the folded w its scores."""
        import torch
        seq_len = k.shape[0]
        dots = torch.einsum("shd,td->sht", q[sel].float(), k.float())
        scores = torch.einsum("sh,sht->st", weights[sel], torch.relu(dots * softmax_scale))
        folded = torch.einsum("sh,sht->st", w[sel], torch.relu(dots))
        # (IndexerHooks has checked that the model's mask is plain causal: each query sees keys 0..q_pos.)
        visible = torch.arange(seq_len, device=k.device)[None, :] <= sel[:, None]
        scale = scores[visible].abs().max().clamp_min(1e-30)
        if (folded - scores)[visible].abs().max() > 1e-5 * scale:
            raise CaptureError(f"layer {layer}: w with folded factors does not reproduce the module's scores")
        self.checks[layer] = compare_topk(scores.masked_fill(~visible, float("-inf")), output[sel], sel + 1)


def compare_topk(scores, ref, seen):
    """Tie-aware comparison of a recomputed score matrix with reference indices; query i sees keys
    0 .. seen[i]-1. Returns counts: queries, exact (same set), tie_swaps (tokens swapped between exactly equal
    scores), unexplained (other tokens)."""
    import torch
    counts = {"queries": int(scores.shape[0]), "exact": 0, "tie_swaps": 0, "unexplained": 0}
    for i in range(scores.shape[0]):
        visible = int(seen[i])
        k = min(ref.shape[1], visible)
        want = set(int(x) for x in ref[i].tolist() if 0 <= int(x) < visible)
        top = torch.topk(scores[i, :visible], k).indices.tolist()
        got = set(top)
        if got == want:
            counts["exact"] += 1
            continue
        kth = float(scores[i, top[-1]]) if top else 0.0
        for s in got ^ want:
            if float(scores[i, s]) == kth:
                counts["tie_swaps"] += 1
            else:
                counts["unexplained"] += 1
    return counts


# ----- writing ---------------------------------------------------------------------------------------------

def write_tensor(group, name, tensor, dtype):
    import torch
    if dtype == "bf16":
        bits = tensor.to(torch.bfloat16).contiguous().view(torch.int16).numpy().view(np.uint16)
        write_bfloat16_bits(group, name, bits)
    else:
        write_array(group, name, tensor.float().numpy())


def stored_values(tensor, dtype, device):
    """The values a reader decodes from what write_tensor stores: bf16-rounded or float32."""
    import torch
    if dtype == "bf16":
        tensor = tensor.to(torch.bfloat16)
    return tensor.to(device=device, dtype=torch.float32)


def reference_selection(c, positions, index_topk, dtype, rule):
    """topk_ref by a declared rule (hisa_reference.py), from q, k and w exactly as they will be stored."""
    import torch
    import hisa_reference
    device = rule["device"]
    sel = hisa_reference.select(
        rule["method"], stored_values(c["q"], dtype, device), stored_values(c["k"], dtype, device),
        c["w"].to(device=device, dtype=torch.float32), torch.as_tensor(positions, device=device),
        topk=index_topk, block_size=rule.get("block_size", 128), blocks=rule.get("blocks"),
        forced=rule.get("forced", "in-budget"), pool_precision=rule.get("pool_precision", "fp32"))
    if sel.shape[1] > index_topk:
        raise CaptureError(f"--ref-rule {rule['method']}: a selection of {sel.shape[1]} tokens does not fit "
                           f"topk_ref's {index_topk} columns")
    return sel.cpu().numpy()


def write_sample(f, name, attrs, positions, captured, index_topk, dtype, rule=None, window=None):
    g = f.create_group(name)
    for key, value in attrs.items():
        g.attrs[key] = value
    for layer in sorted(captured):
        c = captured[layer]
        lg = g.create_group(f"layer_{layer}")
        lg.attrs["layer"] = layer
        ratio = c.get("compress_ratio", 1)
        if ratio != 1:
            lg.attrs["compress_ratio"] = ratio
            if window is not None:
                lg.attrs["window"] = window
        write_tensor(lg, "k", c["k"], dtype)
        write_tensor(lg, "q", c["q"], dtype)
        write_array(lg, "w", c["w"].numpy().astype(np.float32))
        write_array(lg, "q_pos", positions)
        if rule is not None:
            declared = {key: rule[key] for key in ("block_size", "blocks", "forced", "pool_precision")
                        if rule["method"] != "flat"}
            write_topk_ref(lg, reference_selection(c, positions, index_topk, dtype, rule), index_topk,
                           method=rule["method"], **declared)
            continue
        ref = model_topk_ref(c["topk_ref"].numpy(), positions, ratio, index_topk)
        write_topk_ref(lg, ref, index_topk, method=None)


def capture(args):
    import torch
    import transformers
    reference_rule(args, args.index_topk if args.tiny else None)  # bad --ref-* options fail before the model loads
    model, tokenizer, name = load_model(args)
    cfg = model.config
    if args.dtype == "bf16" and args.model_dtype != "bf16":
        print("hisa_capture: note: storing a float32 model's q and k as bf16 rounds them; topk_ref was chosen "
              "from unrounded values", file=sys.stderr)
    samples = []
    for spec in args.niah or []:
        length, _, depth = spec.partition(":")
        ids, attrs = prompts.niah(tokenizer, int(length), float(depth or 50), seed=args.seed)
        samples.append((f"niah_{length}_d{int(float(depth or 50))}", ids, attrs))
    if args.longbench:
        samples += list(prompts.longbench(tokenizer, args.longbench, args.max_records, args.max_tokens))
    if not samples:
        raise CaptureError("nothing to capture: give --niah LEN:DEPTH and/or --longbench FILE.jsonl")
    layers = set(int(x) for x in args.layers.split(",")) if args.layers else None
    rule = reference_rule(args, cfg.index_topk)
    if rule is not None and cfg.model_type in COMPRESSED:
        raise CaptureError("--ref-rule is not available for compressed indexers (deepseek_v4) yet; capture the "
                           "model's own top-k")
    hook = IndexerCapture(model, layers)
    source = (f"hisa_capture.py model={name} seed={args.seed} queries={args.queries} dtype={args.dtype} "
              f"model_dtype={args.model_dtype} device={args.device} torch={torch.__version__} "
              f"transformers={transformers.__version__}")
    if rule is not None:
        source += " ref_rule=" + ",".join(f"{key}={value}" for key, value in rule.items() if key != "device")
    report = []
    with h5py.File(args.output, "w", track_order=True) as f:
        f.attrs["format"] = "hisa-dump"
        f.attrs["format_version"] = 1
        f.attrs["model"] = f"{cfg.model_type}:{name}"
        f.attrs["n_heads"] = cfg.index_n_heads
        f.attrs["head_dim"] = cfg.index_head_dim
        f.attrs["index_topk"] = cfg.index_topk
        f.attrs["hadamard"] = 0  # transformers scores in bf16/fp32 without the rotation
        f.attrs["rope"] = ROPE[cfg.model_type]
        f.attrs["source"] = source
        for sample_name, ids, attrs in samples:
            needle = (attrs["needle_begin"], attrs["needle_end"]) if "needle_begin" in attrs else None
            hook.positions = query_positions(args.queries, len(ids), needle)
            hook.captured, hook.checks = {}, {}
            with torch.no_grad():
                model(input_ids=torch.tensor([ids], device=args.device), use_cache=False)
            if not hook.captured:
                raise CaptureError(f"{sample_name}: no indexer ran for the requested layers")
            write_sample(f, sample_name, attrs, hook.positions, hook.captured, cfg.index_topk, args.dtype, rule,
                         window=getattr(cfg, "sliding_window", None))
            for layer, c in sorted(hook.checks.items()):
                report.append((sample_name, layer, c))
    hook.close()
    bad = 0
    for sample_name, layer, c in report:
        print(f"{sample_name} layer {layer}: {c['queries']} queries, {c['exact']} identical top-k, "
              f"{c['tie_swaps']} tie swaps, {c['unexplained']} unexplained", file=sys.stderr)
        bad += c["unexplained"]
    print(f"hisa_capture: wrote {args.output} ({len(samples)} sample(s), {len(report)} sample-layers)", file=sys.stderr)
    if bad:
        raise CaptureError(f"{bad} top-k entries differ from the model's own indexer beyond exact ties")
    return report


def reference_rule(args, index_topk):
    """The --ref-rule settings, every one resolved (None: topk_ref is the model's own top-k). With index_topk
    None (not known yet), only what does not depend on it is checked."""
    ref_options = {"--ref-block-size": args.ref_block_size, "--ref-blocks": args.ref_blocks,
                   "--ref-forced": args.ref_forced, "--ref-pool-precision": args.ref_pool_precision}
    given = [name for name, value in ref_options.items() if value is not None]
    if args.ref_rule in (None, "flat"):
        if given:
            raise CaptureError(f"{', '.join(given)} {'needs' if len(given) == 1 else 'need'} --ref-rule hisa or "
                               "block-sparse")
        return None if args.ref_rule is None else {"method": "flat", "device": args.device}
    block_size = 128 if args.ref_block_size is None else args.ref_block_size
    if block_size < 1 or (args.ref_blocks is not None and args.ref_blocks < 1):
        raise CaptureError("--ref-block-size and --ref-blocks must be >= 1")
    if args.ref_blocks is not None:
        blocks = args.ref_blocks
    else:
        blocks = 64 if args.ref_rule == "hisa" else -(-(index_topk or 1) // block_size)
    forced = args.ref_forced or "in-budget"
    if args.ref_rule == "block-sparse" and index_topk is not None:
        widest = (blocks + (2 if forced == "extra" else 0)) * block_size
        if widest > index_topk:
            raise CaptureError(f"--ref-rule block-sparse with B = {block_size}, m = {blocks} ({forced}) can select "
                               f"{widest} tokens, more than topk_ref's index_topk = {index_topk} columns")
    return {"method": args.ref_rule, "block_size": block_size, "blocks": blocks, "forced": forced,
            "pool_precision": args.ref_pool_precision or "fp32", "device": args.device}


def parse_args(argv):
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    src = p.add_mutually_exclusive_group(required=True)
    src.add_argument("--checkpoint", help="local model directory (deepseek_v32, glm_moe_dsa or deepseek_v4)")
    src.add_argument("--tiny", choices=sorted(ROPE), help="a tiny randomly initialised model of this type")
    p.add_argument("-o", "--output", required=True)
    p.add_argument("--niah", action="append", metavar="LEN:DEPTH", help="a NIAH prompt (repeatable)")
    p.add_argument("--longbench", metavar="FILE.jsonl", help="LongBench-style records: context, input[, dataset]")
    p.add_argument("--max-records", type=int)
    p.add_argument("--max-tokens", type=int, help="truncate LongBench contexts from the left to this many tokens")
    p.add_argument("--queries", default="all", help="all | last:N | every:N | needle:W (default all)")
    p.add_argument("--layers", help="comma-separated layer numbers (default: every layer whose indexer runs)")
    p.add_argument("--dtype", choices=["bf16", "f32"], default="bf16", help="storage of q and k (default bf16)")
    p.add_argument("--model-dtype", choices=["bf16", "f32"], default="bf16")
    p.add_argument("--device", default="cpu")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--index-topk", type=int, default=32, help="tiny models: index_topk")
    p.add_argument("--tiny-layers", type=int, default=3, help="tiny models: layers")
    p.add_argument("--ref-rule", choices=["flat", "hisa", "block-sparse"],
                   help="write as topk_ref this rule's selection, recomputed from the stored q, k, w "
                        "(hisa_reference.py), and declare it in topk_ref's attributes (default: the model's own "
                        "top-k, undeclared)")
    p.add_argument("--ref-block-size", type=int, help="--ref-rule hisa/block-sparse: B (default 128)")
    p.add_argument("--ref-blocks", type=int,
                   help="--ref-rule hisa/block-sparse: m (default 64 for hisa, ceil(index_topk/B) for block-sparse)")
    p.add_argument("--ref-forced", choices=["in-budget", "extra"],
                   help="--ref-rule hisa/block-sparse: forced blocks (default in-budget)")
    p.add_argument("--ref-pool-precision", choices=["fp32", "fp8"],
                   help="--ref-rule hisa/block-sparse: pooled keys (default fp32)")
    return p.parse_args(argv)


def main(argv=None):
    try:
        capture(parse_args(argv))
    except (IndexerError, ValueError, OSError) as e:
        print(f"hisa_capture: error: {e}", file=sys.stderr)
        return 2
    return 0


if __name__ == "__main__":
    sys.exit(main())
