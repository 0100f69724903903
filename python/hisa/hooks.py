"""Audit a transformers DSA model as it runs: every indexer call is audited (flat DSA against HISA, and the model's
own top-k judged against the flat rule) without writing a dump.

    import hisa.hooks
    with hisa.hooks.audit_model(model, block_size=128, blocks=64) as live:
        model(input_ids, use_cache=False)        # one prompt per call; each call is one sample
    print(live.audit.table())
    live.audit.write_report("live.html")

The tensors are derived exactly as the capture tool derives them (hisa/indexer_tensors.py): q and k after RoPE,
w with H^-1/2 and the softmax scale folded in, the module's output as topk_ref.
"""
import contextlib

from . import Audit
from .indexer_tensors import IndexerHooks, model_topk_ref, query_positions


class ModelAudit:
    """Hooks on a model's indexers that add every call to `audit` (a hisa.Audit). Each forward call of the model
    is one sample, named sample_format.format(n) for the n-th call, or `sample` when set before the call; `needle`
    (a (begin, end) token range) set before a call gives that prompt's needle. Both apply to one call.
    close() (or leaving the `with` block of audit_model) removes the hooks."""

    def __init__(self, model, audit, layers=None, queries="all", judge_model_topk=True,
                 sample_format="forward_{}"):
        self.audit = audit
        self.queries = queries
        self.judge_model_topk = judge_model_topk
        self.sample_format = sample_format
        self.sample = None
        self.needle = None
        self.calls = 0
        self.layers_audited = 0
        self.index_topk = int(model.config.index_topk)
        self.window = getattr(model.config, "sliding_window", None)  # V4: reported beside compressed layers
        query_positions(queries, 1, (0, 1))  # a bad spelling fails before the model runs
        self._hooks = IndexerHooks(model, self._add, None if layers is None else set(layers))
        self._start = model.register_forward_pre_hook(self._next_sample)

    def _next_sample(self, module, args):
        self._current = self.sample if self.sample is not None else self.sample_format.format(self.calls)
        self._needle = self.needle
        self.sample, self.needle = None, None
        self.calls += 1

    def _add(self, t):
        import torch
        rows = query_positions(self.queries, t.q.shape[0], self._needle)
        sel = torch.as_tensor(rows, device=t.q.device)
        ref = None
        if self.judge_model_topk:
            ref = model_topk_ref(t.output[sel].to(torch.int64).cpu().numpy(), rows, t.compress_ratio, self.index_topk)
        self.audit.add(t.q[sel], t.k, t.w[sel], rows, layer=t.layer, sample=self._current,
                       compress_ratio=t.compress_ratio, window=self.window if t.compress_ratio > 1 else None,
                       needle=self._needle, topk_ref=ref)
        self.layers_audited += 1

    def close(self):
        self._hooks.close()
        self._start.remove()


@contextlib.contextmanager
def audit_model(model, audit=None, layers=None, queries="all", judge_model_topk=True, **audit_options):
    """Audits every indexer call of `model` inside the block; yields the ModelAudit (its .audit holds the results).
    audit: a hisa.Audit to add to (default: a new one made with audit_options, topk = the model's index_topk).
    layers: the layer numbers to audit (default: all). queries: "all", "last:N", "every:N" or "needle:W" (the
    needle set with `.needle` ± W tokens and the last 32) positions of each prompt, as the capture tool's --queries. judge_model_topk: pass the module's own top-k as topk_ref, judged against the flat rule."""
    if audit is None:
        audit_options.setdefault("topk", int(model.config.index_topk))
        audit = Audit(**audit_options)
    elif audit_options:
        raise ValueError(f"audit_options {sorted(audit_options)} given with an Audit: set them on the Audit")
    if judge_model_topk and audit.topk != int(model.config.index_topk):
        raise ValueError(f"the Audit's topk {audit.topk} is not the model's index_topk {model.config.index_topk}: "
                         f"its own top-k cannot be judged against it (judge_model_topk=False leaves it out)")
    live = ModelAudit(model, audit, layers=layers, queries=queries, judge_model_topk=judge_model_topk)
    try:
        yield live
    finally:
        live.close()
