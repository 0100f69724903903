"""hisa on live tensors: DSA, HISA and block-sparse selection and the audit's per-layer statistics, computed by
the same engines as the `hisa` command line tool, from NumPy arrays or PyTorch tensors instead of a dump file.

    import hisa
    sel = hisa.select(q, k, w, q_pos, method="hisa", block_size=128, blocks=64, topk=2048)
    stats, per_query = hisa.audit_layer(q, k, w, q_pos, topk=2048)

Shapes and meanings are the dump format's (datasets/FORMAT.md): q [Nq, H, D], k [L, D], w [Nq, H] with every
factor folded in, q_pos [Nq] (token positions), k_start [Nq] (optional), k_scale [L] (fp8 keys), and
compress_ratio for DeepSeek-V4's compressed keys. q and k may be float32, float16, bfloat16, float8_e4m3fn or
float4_e2m1fn_x2 (torch), or float32/float16 NumPy arrays; NumPy holds bfloat16, fp8 and fp4 as their bit
patterns (uint16, uint8, two fp4 codes per uint8), named with q_dtype / k_dtype ("bf16", "fp8", "fp4"); fp4
comes with its ue8m0 block scales (q_scale_blocks [Nq, H, D/32], k_scale_blocks [L, D/32]). docs/python.md has
the details.
"""
import json
import os

import numpy as np

from . import _hisa

__all__ = ["select", "audit_layer", "Audit", "cuda_available"]

_NUMPY_TYPES = {np.dtype(np.float32): "f32", np.dtype(np.float16): "f16"}
_CODE_TYPES = {"bf16": np.uint16, "bfloat16": np.uint16, "f16": np.uint16, "fp8": np.uint8,
               "float8_e4m3fn": np.uint8, "fp4": np.uint8, "float4_e2m1fn_x2": np.uint8}
_CANONICAL = {"bfloat16": "bf16", "float8_e4m3fn": "fp8", "float4_e2m1fn_x2": "fp4"}


def cuda_available():
    """Whether this build has the CUDA engine and a GPU it runs on."""
    return _hisa.cuda_available()


def _is_torch(x):
    return type(x).__module__.split(".")[0] == "torch"


def _torch_types():
    """torch element types the module takes: {dtype: (element type name, integer dtype its bits are read as)}."""
    import torch
    types = {torch.float32: ("f32", None), torch.float16: ("f16", torch.int16), torch.bfloat16: ("bf16", torch.int16)}
    for attr, kind in (("float8_e4m3fn", "fp8"), ("float4_e2m1fn_x2", "fp4")):
        if getattr(torch, attr, None) is not None:
            types[getattr(torch, attr)] = (kind, torch.uint8)
    return types


def _operand(x, name, dtype=None):
    """(C-contiguous NumPy array of element codes or float32 values, element type name)."""
    if _is_torch(x):
        x = x.detach()
        if x.is_cuda:
            x = x.cpu()  # where the module cannot read it in place (docs/python.md)
        x = x.contiguous()
        torch_types = _torch_types()
        if x.dtype not in torch_types:
            raise ValueError(f"{name}: unsupported element type {x.dtype} (float32, float16, bfloat16, "
                             f"float8_e4m3fn or float4_e2m1fn_x2)")
        kind, view = torch_types[x.dtype]
        arr = (x.view(view) if view is not None else x).numpy()
        if kind in ("f16", "bf16"):
            arr = arr.view(np.uint16)
        return np.ascontiguousarray(arr), kind
    arr = np.ascontiguousarray(np.asarray(x))
    if dtype is not None:
        kind = _CANONICAL.get(dtype, dtype)
        if dtype not in _CODE_TYPES and dtype != "f32":
            raise ValueError(f"{name}: unknown dtype {dtype!r} (f32, f16, bf16, fp8 or fp4)")
        if dtype == "f32":
            return arr, "f32"
        want = _CODE_TYPES[dtype]
        if arr.dtype == np.float16 and kind == "f16":
            return arr.view(np.uint16), "f16"
        if arr.dtype.itemsize != np.dtype(want).itemsize or arr.dtype.kind == "f":
            raise ValueError(f"{name}: dtype {dtype!r} needs {np.dtype(want).name} bit patterns, found {arr.dtype}")
        return arr.view(want), kind
    if arr.dtype not in _NUMPY_TYPES:
        raise ValueError(f"{name}: unsupported element type {arr.dtype} (float32 or float16; bfloat16 and fp8 as "
                         f"uint16/uint8 bit patterns with {name}_dtype='bf16' or 'fp8')")
    kind = _NUMPY_TYPES[arr.dtype]
    return (arr.view(np.uint16) if kind == "f16" else arr), kind


def _plain(x, name, dtype):
    """w, q_pos, k_start, k_scale, topk_ref: host NumPy arrays of one dtype (a copy only when the type differs)."""
    if x is None:
        return None
    if _is_torch(x):
        import torch
        x = x.detach().cpu()
        if x.dtype == getattr(torch, "float8_e8m0fnu", None):  # ue8m0 block scales: their bytes are the codes
            x = x.view(torch.uint8)
        x = x.numpy()
    arr = np.asarray(x)
    want = np.dtype(dtype)
    if arr.dtype.kind not in "fiu" or (want.kind in "iu" and arr.dtype.kind == "f"):
        raise ValueError(f"{name}: expected {want.name} values, found {arr.dtype}")
    if want.kind in "iu" and arr.size and arr.dtype != want:
        info = np.iinfo(want)
        low, high = int(arr.min()), int(arr.max())
        if low < info.min or high > info.max:
            raise ValueError(f"{name}: holds {low if low < info.min else high}, outside {want.name}")
    return np.ascontiguousarray(arr, dtype=want)


def _layer_args(q, k, w, q_pos, k_start, k_scale, q_dtype, k_dtype, q_scale_blocks=None, k_scale_blocks=None):
    qa, qt = _operand(q, "q", q_dtype)
    ka, kt = _operand(k, "k", k_dtype)
    return (qa, qt, ka, kt, _plain(w, "w", np.float32), _plain(q_pos, "q_pos", np.int64),
            _plain(k_start, "k_start", np.int64), _plain(k_scale, "k_scale", np.float32),
            _plain(q_scale_blocks, "q_scale_blocks", np.uint8), _plain(k_scale_blocks, "k_scale_blocks", np.uint8))


def _gpu_kinds():
    """The torch element types the GPU decodes in place, {dtype: name}: all but fp4 (decoded on the host)."""
    return {dtype: kind for dtype, (kind, _) in _torch_types().items() if kind != "fp4"}


def _gpu_pair(q, k):
    """Whether q and k are CUDA tensors on one GPU, of codes the GPU decodes."""
    if not (_is_torch(q) and _is_torch(k) and q.is_cuda and k.is_cuda and q.device == k.device):
        return False
    kinds = _gpu_kinds()
    return q.dtype in kinds and k.dtype in kinds


def _reads_on_gpu(q, k, device):
    """Whether select() reads q and k where they are: CUDA tensors on one GPU, of codes the GPU decodes, a build
    whose kernels run on that GPU, and device "cuda" or "auto" (with "cpu", or with "auto" when the GPU cannot
    be used, the tensors go through the host as they always could)."""
    if device not in ("auto", "cuda", "cpu"):
        raise ValueError(f"device: {device!r}, expected \"auto\", \"cuda\" or \"cpu\"")
    if device == "cpu" or not _gpu_pair(q, k) or not hasattr(_hisa, "select_on_gpu"):
        return False
    return device == "cuda" or _hisa.gpu_usable(q.device.index)


def _gpu_operands(q, k, w, k_scale):
    """q, k, w and k_scale described for the module's GPU calls, (pointer, shape, element type, device index),
    and the tensors described (keep them referenced while the module reads them). w and k_scale are brought to
    q's GPU as float32 first."""
    import torch
    kinds = _gpu_kinds()

    def tensor(x, name, dtype=None):
        if dtype is not None:  # w, k_scale: float values, as float32 on q's GPU
            if not _is_torch(x):
                x = torch.from_numpy(_plain(x, name, np.float32))
            elif x.dtype == torch.bool or x.is_complex():  # what _plain refuses on the host path
                raise ValueError(f"{name}: expected float32 values, found {x.dtype}")
            x = x.to(device=q.device, dtype=dtype)
        x = x.detach().contiguous()
        return (x.data_ptr(), tuple(x.shape), kinds[x.dtype], x.device.index), x

    operands = [tensor(q, "q"), tensor(k, "k"), tensor(w, "w", torch.float32)]
    operands.append(tensor(k_scale, "k_scale", torch.float32) if k_scale is not None else (None, None))
    torch.cuda.current_stream(q.device).synchronize()  # the engine runs on a stream of its own
    return [d for d, _ in operands], [t for _, t in operands]


def _select_on_gpu(q, k, w, q_pos, k_start, k_scale, method, block_size, blocks, forced, pool_precision, topk,
                   compress_ratio):
    """select() by the CUDA engine on q's GPU, reading q, k, w and k_scale there; only q_pos and k_start come
    to the host."""
    import torch
    described, _tensors = _gpu_operands(q, k, w, k_scale)
    with torch.cuda.device(q.device):  # the engine makes q's GPU current; the caller's current GPU comes back
        return _hisa.select_on_gpu(described[0], described[1], described[2], _plain(q_pos, "q_pos", np.int64),
                                   _plain(k_start, "k_start", np.int64), described[3], method, int(block_size),
                                   int(blocks), forced, pool_precision, int(topk), int(compress_ratio))


def select(q, k, w, q_pos, k_start=None, k_scale=None, method="flat", block_size=128, blocks=64,
           forced="in-budget", pool_precision="fp32", topk=2048, device="auto", compress_ratio=1, threads=0,
           q_dtype=None, k_dtype=None, q_scale_blocks=None, k_scale_blocks=None):
    """One method's selection for every query: int32 [Nq, width], ascending, -1 padded (width min(topk, L), or
    the largest block-sparse selection), exactly what `hisa select` writes. method: "flat", "hisa" or
    "block-sparse". Returns a torch tensor on q's device when q is a torch tensor, else a NumPy array.
    CUDA tensors (float32, float16, bfloat16, float8_e4m3fn) are read where they are by the CUDA engine on their
    GPU, unless device="cpu"; q_pos and k_start are then the only operands copied to the host."""
    if _reads_on_gpu(q, k, device):
        out = _select_on_gpu(q, k, w, q_pos, k_start, k_scale, method, block_size, blocks, forced, pool_precision,
                             topk, compress_ratio)
    else:
        out = _hisa.select(*_layer_args(q, k, w, q_pos, k_start, k_scale, q_dtype, k_dtype, q_scale_blocks,
                                        k_scale_blocks),
                           method, int(block_size), int(blocks), forced, pool_precision, int(topk), device,
                           int(compress_ratio), int(threads))
    if _is_torch(q):
        import torch
        return torch.from_numpy(out).to(q.device)
    return out


class Audit:
    """An audit of layers added one at a time, from any number of samples, as `hisa audit` makes it from a dump:
    each layer's samples merged in the order added, then written as the CLI writes (write_json, write_csv,
    write_query_csv, write_report) or read as a dict (result()) or a table (table()).

        audit = hisa.Audit(topk=2048, block_size=128, blocks=64)
        for layer, (q, k, w, q_pos) in enumerate(layers):
            audit.add(q, k, w, q_pos, layer=layer, sample="niah-32k")
        print(audit.table())
        audit.write_report("report.html")

    worst: queries listed per layer (the report draws `pictures` of them, re-scored while their layer is in
    memory); per_query=True keeps every query's per-query CSV row for write_query_csv."""

    def __init__(self, topk=2048, block_size=128, blocks=64, forced="in-budget", pool_precision="fp32",
                 device="auto", threads=0, worst=10, pictures=6, per_query=False):
        self._audit = _hisa.Audit(int(topk), int(block_size), int(blocks), forced, pool_precision, device,
                                  int(threads), int(worst), int(pictures), bool(per_query))
        self.topk = int(topk)

    @property
    def engine(self):
        """The engine that audits: "cpu" or "cuda"."""
        return self._audit.engine()

    def add(self, q, k, w, q_pos, layer, sample="python", k_start=None, k_scale=None, compress_ratio=1,
            window=None, needle=None, topk_ref=None, ref_method=None, ref_block_size=None, ref_blocks=None,
            ref_forced=None, ref_pool_precision=None, q_dtype=None, k_dtype=None, q_scale_blocks=None,
            k_scale_blocks=None):
        """Audits one sample's layer and adds it: (stats, per_query) of this sample's layer alone, as
        audit_layer returns them. A sample's layer is added once; a layer's samples agree on compress_ratio.
        window: the tokens attended besides the selection (DeepSeek-V4: 128), reported as context.
        CUDA tensors (float32, float16, bfloat16, float8_e4m3fn) on the GPU this audit's engine runs on are read
        there, without a copy to the host (topk_ref, a host array or a tensor anywhere, is judged there too)."""
        begin, end = (None, None) if needle is None else (int(needle[0]), int(needle[1]))

        def rest():  # the arguments both calls end with, converted after the operands (whose errors come first)
            return (int(compress_ratio), None if window is None else int(window), int(layer), str(sample), begin, end,
                    _plain(topk_ref, "topk_ref", np.int32), ref_method, ref_block_size, ref_blocks, ref_forced,
                    ref_pool_precision)

        if self._reads_on_gpu(q, k, q_dtype, k_dtype, q_scale_blocks, k_scale_blocks):
            import torch
            described, _tensors = _gpu_operands(q, k, w, k_scale)
            with torch.cuda.device(q.device):
                text, columns = self._audit.add_on_gpu(
                    described[0], described[1], described[2], _plain(q_pos, "q_pos", np.int64),
                    _plain(k_start, "k_start", np.int64), described[3], *rest())
        else:
            text, columns = self._audit.add(
                *_layer_args(q, k, w, q_pos, k_start, k_scale, q_dtype, k_dtype, q_scale_blocks, k_scale_blocks),
                *rest())
        stats = json.loads(text)
        stats["engine"] = self.engine
        return stats, dict(columns)

    def _reads_on_gpu(self, q, k, q_dtype, k_dtype, q_scale_blocks, k_scale_blocks):
        """Whether add() reads q and k where they are: CUDA tensors of codes the GPU decodes, on the GPU this
        audit's engine runs on."""
        if q_dtype is not None or k_dtype is not None:
            return False
        if q_scale_blocks is not None or k_scale_blocks is not None or not hasattr(self._audit, "add_on_gpu"):
            return False
        return _gpu_pair(q, k) and self._audit.device() == q.device.index

    def result(self):
        """The audit JSON (`hisa audit --json`) of every layer added so far, as a dict."""
        return json.loads(self._audit.json())

    def table(self):
        """The per-layer table `hisa audit` prints."""
        return self._audit.table()

    def write_json(self, path):
        """Writes result() as `hisa audit --json` writes it (whole or not at all)."""
        self._audit.write_json(os.fspath(path))

    def write_csv(self, path):
        """Writes the per-layer CSV of `hisa audit --csv`."""
        self._audit.write_csv(os.fspath(path))

    def write_query_csv(self, path):
        """Writes the per-query CSV of `hisa audit --per-query` (needs per_query=True)."""
        self._audit.write_query_csv(os.fspath(path))

    def write_report(self, path, command_line=""):
        """Writes the HTML page of `hisa report`: tables, histograms, budget curves, the worst queries drawn."""
        self._audit.write_report(os.fspath(path), str(command_line))


def audit_layer(q, k, w, q_pos, k_start=None, k_scale=None, block_size=128, blocks=64, forced="in-budget",
                pool_precision="fp32", topk=2048, device="auto", compress_ratio=1, threads=0, layer=0,
                needle=None, topk_ref=None, ref_method=None, ref_block_size=None, ref_blocks=None, ref_forced=None,
                ref_pool_precision=None, worst=0, q_dtype=None, k_dtype=None, q_scale_blocks=None,
                k_scale_blocks=None):
    """One layer's audit, as `hisa audit` computes it: (stats, per_query). stats is the audit JSON's per-layer
    object as a dict (with "engine" added); per_query maps every per-query CSV column (query, q_pos, iou,
    recall, ...) to a NumPy array, NaN where the CSV leaves the field empty. needle: (begin, end) token range.
    topk_ref [Nq, K] (-1 padded) is judged against its rule (ref_method etc., as topk_ref's attributes)."""
    audit = Audit(topk=topk, block_size=block_size, blocks=blocks, forced=forced, pool_precision=pool_precision,
                  device=device, threads=threads, worst=worst, pictures=0)
    return audit.add(q, k, w, q_pos, layer=layer, k_start=k_start, k_scale=k_scale, compress_ratio=compress_ratio,
                     needle=needle, topk_ref=topk_ref, ref_method=ref_method, ref_block_size=ref_block_size,
                     ref_blocks=ref_blocks, ref_forced=ref_forced, ref_pool_precision=ref_pool_precision,
                     q_dtype=q_dtype, k_dtype=k_dtype, q_scale_blocks=q_scale_blocks,
                     k_scale_blocks=k_scale_blocks)
