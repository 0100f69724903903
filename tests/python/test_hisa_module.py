"""`import hisa` (python/) against the `hisa` command line tool: the same selections and the same audit numbers
from arrays as from the dump file, for every element type (f32, f16, bf16, fp8, fp4), compressed layers
included; bad input raises
ValueError with the file loader's words. Run by ctest (python_module) with PYTHONPATH at the build's python/ and
HISA_BINARY at the built tool."""
import csv
import json
import math
import os
import re
import subprocess
import threading

import h5py
import numpy as np
import pytest

import hisa

HISA = os.environ.get("HISA_BINARY", "hisa")
GOLDEN = os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "..", "datasets", "golden")
GOLDEN_DUMPS = ["deepseek_v32_tiny_niah.h5", "glm_moe_dsa_tiny_niah.h5", "deepseek_v4_tiny_niah.h5"]


def run(*args):
    r = subprocess.run([HISA, *args], capture_output=True, text=True)
    assert r.returncode == 0, r.stderr
    return r


def layer_arrays(group):
    """The operands of a dump's layer group as a user holds them: values (h5py reads bfloat16 as float32), or
    the fp8 codes with their element type named."""
    arrays = {}
    for name in ("q", "k"):
        d = group[name]
        if d.attrs.get("encoding") == "float8_e4m3fn":
            arrays[name] = d[...].view(np.uint8)
            arrays[name + "_dtype"] = "fp8"
        elif d.attrs.get("encoding") == "float4_e2m1fn_x2":
            arrays[name] = d[...].view(np.uint8)
            arrays[name + "_dtype"] = "fp4"
            arrays[name + "_scale_blocks"] = group[name + "_scale_blocks"][...]
        elif d.dtype == np.float16:
            arrays[name] = d[...]
        else:
            arrays[name] = np.asarray(d[...], dtype=np.float32)
    arrays["w"] = group["w"][...]
    arrays["q_pos"] = group["q_pos"][...]
    for name in ("k_start", "k_scale"):
        if name in group:
            arrays[name] = group[name][...]
    arrays["compress_ratio"] = int(group.attrs.get("compress_ratio", 1))
    return arrays


def cli_selections(tmp_path, dump, method, extra):
    out = str(tmp_path / f"{method}.h5")
    run("select", dump, "--method", method, "-o", out, "--device", "cpu", *extra)
    return h5py.File(out, "r")


@pytest.mark.parametrize("dump", GOLDEN_DUMPS)
@pytest.mark.parametrize("method", ["flat", "hisa", "block"])
def test_select_equals_the_cli_on_the_golden_dumps(tmp_path, dump, method):
    path = os.path.join(GOLDEN, dump)
    cli = cli_selections(tmp_path, path, method, ["--block-size", "16", "--blocks", "4"])
    with h5py.File(path, "r") as f:
        for sample in f:
            for layer in f[sample]:
                a = layer_arrays(f[sample][layer])
                got = hisa.select(**a, method="block-sparse" if method == "block" else method, block_size=16,
                                  blocks=4, topk=int(f.attrs["index_topk"]), device="cpu")
                want = cli[f"{sample}/{layer}/indices"][...]
                assert got.dtype == np.int32
                np.testing.assert_array_equal(got, want, err_msg=f"{dump} {sample}/{layer} {method}")


def synth(tmp_path, dtype, extra=()):
    path = str(tmp_path / f"synth-{dtype}.h5")
    run("synth", "-o", path, "--seq-len", "2048", "--layers", "2", "--heads", "4", "--head-dim", "64", "--topk", "64",
        "--queries", "sample:24", "--dtype", dtype, *extra)
    return path


def cli_audit(tmp_path, path, extra=()):
    js, pq = str(tmp_path / "a.json"), str(tmp_path / "q.csv")
    run("audit", path, "--device", "cpu", "--block-size", "16", "--blocks", "8", "--json", js, "--per-query", pq,
        *extra)
    with open(js) as fh:
        layers = {layer["layer"]: layer for layer in json.load(fh)["layers"]}
    with open(pq) as fh:
        rows = list(csv.DictReader(fh))
    return layers, rows


def same_number(a, b):
    if isinstance(a, float) and isinstance(b, float):
        return a == b or (math.isnan(a) and math.isnan(b))
    return a == b


@pytest.mark.parametrize("dtype", ["f32", "f16", "bf16", "fp8", "fp4"])
def test_audit_layer_equals_the_cli_for_every_element_type(tmp_path, dtype):
    path = synth(tmp_path, dtype, ["--profile", "niah", "--packed", "2"])
    layers, rows = cli_audit(tmp_path, path)
    with h5py.File(path, "r") as f:
        s = f["sample_0"]
        needle = (int(s.attrs["needle_begin"]), int(s.attrs["needle_end"]))
        for layer in (0, 1):
            a = layer_arrays(s[f"layer_{layer}"])
            stats, per_query = hisa.audit_layer(**a, block_size=16, blocks=8, topk=64, device="cpu", layer=layer,
                                                needle=needle)
            want = dict(layers[layer])
            assert stats.pop("engine") == "cpu"
            for key in ("samples", "missing_samples"):
                stats.pop(key), want.pop(key)
            assert stats == want, f"{dtype} layer {layer}"
            mine = [r for r in rows if int(r["layer"]) == layer]
            assert len(mine) == len(per_query["query"]) == 24
            for column, values in per_query.items():
                for row, v in zip(mine, values):
                    text = row[column]
                    expected = float("nan") if text == "" else float(text)
                    # The CSV prints 6 significant digits.
                    assert same_number(float(v), expected) or math.isclose(float(v), expected, rel_tol=1e-5), \
                        f"{dtype} layer {layer} {column}: {v} vs {text}"


def test_audit_writes_what_the_cli_writes(tmp_path):
    """Two samples of two layers added to a hisa.Audit give `hisa audit`'s JSON, layer CSV and per-query CSV and
    `hisa report`'s page, but for the name of the source."""
    path = synth(tmp_path, "bf16", ["--profile", "niah", "--samples", "2"])
    flags = ["--device", "cpu", "--block-size", "16", "--blocks", "8", "--worst", "4"]
    cli = {name: str(tmp_path / f"cli.{name}") for name in ("json", "csv", "pq", "html")}
    run("audit", path, *flags, "--json", cli["json"], "--csv", cli["csv"], "--per-query", cli["pq"])
    run("report", path, *flags, "--pictures", "3", "-o", cli["html"])
    audit = hisa.Audit(topk=64, block_size=16, blocks=8, device="cpu", worst=4, pictures=3, per_query=True)
    with h5py.File(path, "r") as f:
        for layer in (0, 1):  # the CLI's order: layer by layer, each layer's samples in file order
            for sample in ("sample_0", "sample_1"):
                s = f[sample]
                audit.add(**layer_arrays(s[f"layer_{layer}"]), layer=layer, sample=sample,
                          needle=(int(s.attrs["needle_begin"]), int(s.attrs["needle_end"])))
    mine = {name: str(tmp_path / f"py.{name}") for name in cli}
    audit.write_json(mine["json"])
    audit.write_csv(mine["csv"])
    audit.write_query_csv(mine["pq"])
    audit.write_report(mine["html"])

    def text(p, source=None):
        with open(p) as fh:
            t = fh.read()
        return t if source is None else t.replace(source, "SOURCE")
    with open(cli["json"]) as fh:
        want = json.load(fh)
    got = audit.result()
    assert got["files"] == ["<import hisa>"] and want["files"] == [path]
    got.pop("files"), want.pop("files")
    assert got == want
    assert got["layers"][0]["samples"] == ["sample_0", "sample_1"]
    assert json.loads(text(mine["json"])) == audit.result()
    for name in ("csv", "pq"):
        assert text(mine[name], "<import hisa>") == text(cli[name], path), name
    # The page: the same but for the source's name, the command line, and the `hisa explain` command under each
    # picture, which a query audited from memory has no file for.
    explain = re.compile(r'<div class="cmd"><code>hisa explain [^<]*</code></div>')
    page = re.sub(r'<tr><th class="l">command</th><td class="l">[^<]*</td></tr>\n', "", text(cli["html"], path))
    assert len(explain.findall(page)) == 3
    assert text(mine["html"], "&lt;import hisa&gt;") == explain.sub("", page)
    assert audit.table().startswith(run("audit", path, *flags).stdout.splitlines()[0])
    assert text(mine["html"]).count("<svg") >= 3  # the worst queries were drawn


def test_audit_refuses_a_sample_layer_twice_and_keeps_what_it_had():
    rng = np.random.default_rng(2)
    k = rng.standard_normal((256, 64)).astype(np.float32)
    q = rng.standard_normal((8, 2, 64)).astype(np.float32)
    w = np.ones((8, 2), np.float32)
    q_pos = np.arange(200, 256, 7, dtype=np.int64)
    audit = hisa.Audit(topk=16, block_size=16, blocks=4, device="cpu")
    first, per_query = audit.add(q, k, w, q_pos, layer=3, sample="a")
    assert first["queries"] == 8 and len(per_query["iou"]) == 8
    with pytest.raises(ValueError, match='sample "a" already holds layer 3'):
        audit.add(q, k, w, q_pos, layer=3, sample="a")
    with pytest.raises(ValueError, match="compress_ratio 1, now 4"):
        audit.add(q, k[:64], w, q_pos, layer=3, sample="b", compress_ratio=4)
    with pytest.raises(ValueError, match="q_pos"):
        audit.add(q, k[:100], w, q_pos, layer=4, sample="a")
    audit.add(q, k, w, q_pos, layer=3, sample="b")
    layers = audit.result()["layers"]
    assert [l["layer"] for l in layers] == [3] and layers[0]["queries"] == 16
    assert layers[0]["samples"] == ["a", "b"]
    with pytest.raises(ValueError, match="per_query=True"):
        audit.write_query_csv("/tmp/never-written.csv")
    with pytest.raises(ValueError, match="is a directory"):
        audit.write_json("/tmp")
    # The private half refuses what it cannot read as one run of memory (the package hands it contiguous arrays).
    with pytest.raises(ValueError, match="k: is not C-contiguous"):
        hisa._hisa.select(q, "f32", k[::-1], "f32", w, q_pos, None, None, None, None, "flat", 16, 4, "in-budget",
                          "fp32", 16, "cpu", 1, 0)


def test_threads_may_share_an_audit():
    rng = np.random.default_rng(4)
    k = rng.standard_normal((512, 64)).astype(np.float32)
    q = rng.standard_normal((16, 2, 64)).astype(np.float32)
    w = np.ones((16, 2), np.float32)
    q_pos = np.arange(300, 512, 13, dtype=np.int64)[:16]
    one = hisa.Audit(topk=16, block_size=16, blocks=4, device="cpu")
    shared = hisa.Audit(topk=16, block_size=16, blocks=4, device="cpu")
    for layer in range(8):
        one.add(q, k, w, q_pos, layer=layer)
    threads = [threading.Thread(target=lambda l=layer: shared.add(q, k, w, q_pos, layer=l)) for layer in range(8)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert shared.result() == one.result()


def test_fp4_codes_with_block_scales_select_as_their_values():
    rng = np.random.default_rng(3)
    grid = np.array([0, 0.5, 1, 1.5, 2, 3, 4, 6, -0.0, -0.5, -1, -1.5, -2, -3, -4, -6], np.float32)
    codes = rng.integers(0, 16, size=(300, 64)).astype(np.uint8)
    exps = rng.integers(120, 134, size=(300, 2)).astype(np.uint8)  # scales 2^-7 .. 2^6
    values = grid[codes] * np.repeat(np.ldexp(1.0, exps.astype(np.int32) - 127), 32, axis=1).astype(np.float32)
    packed = (codes[:, 0::2] | (codes[:, 1::2] << 4)).astype(np.uint8)  # the first value in the low nibble
    q = rng.standard_normal((5, 4, 64)).astype(np.float32)
    w = rng.standard_normal((5, 4)).astype(np.float32)
    q_pos = np.array([10, 50, 120, 250, 299], dtype=np.int64)
    for method in ("flat", "hisa", "block-sparse"):
        want = hisa.select(q, values, w, q_pos, method=method, block_size=16, blocks=4, topk=32, device="cpu")
        got = hisa.select(q, packed, w, q_pos, method=method, block_size=16, blocks=4, topk=32, device="cpu",
                          k_dtype="fp4", k_scale_blocks=exps)
        np.testing.assert_array_equal(got, want)
    with pytest.raises(ValueError, match="k_scale_blocks: missing: fp4 k needs its block scales"):
        hisa.select(q, packed, w, q_pos, topk=32, device="cpu", k_dtype="fp4")
    with pytest.raises(ValueError, match=r"k_scale_blocks: shape \[300, 3\] does not match \[L, D / 32\]"):
        hisa.select(q, packed, w, q_pos, topk=32, device="cpu", k_dtype="fp4",
                    k_scale_blocks=np.ones((300, 3), np.uint8))
    with pytest.raises(ValueError, match=r"q: shape \[5, 4, 64\] does not match \[Nq, H, D / 2 = 32\]"):
        hisa.select(q.view(np.uint8)[:, :, :64], values, w, q_pos, topk=32, device="cpu", q_dtype="fp4")
    nan_scale = exps.copy()
    nan_scale[7, 1] = 0xFF
    with pytest.raises(ValueError, match="k: row 7 holds nan"):
        hisa.select(q, packed, w, q_pos, topk=32, device="cpu", k_dtype="fp4", k_scale_blocks=nan_scale)


def test_bfloat16_and_fp8_bit_patterns_select_as_their_values():
    rng = np.random.default_rng(0)
    k = rng.standard_normal((300, 64)).astype(np.float32)
    q = rng.standard_normal((5, 4, 64)).astype(np.float32)
    w = rng.standard_normal((5, 4)).astype(np.float32)
    q_pos = np.array([10, 50, 120, 250, 299], dtype=np.int64)
    # bf16: the upper half of each float32; the values themselves, rounded the same way, as float32.
    def bf16_bits(x):
        u = x.view(np.uint32).astype(np.uint64)
        return ((u + 0x7FFF + ((u >> 16) & 1)) >> 16).astype(np.uint16)
    kb, qb = bf16_bits(k), bf16_bits(q)
    kv = (kb.astype(np.uint32) << 16).view(np.float32)
    qv = (qb.astype(np.uint32) << 16).view(np.float32)
    for method in ("flat", "hisa", "block-sparse"):
        want = hisa.select(qv, kv, w, q_pos, method=method, block_size=16, blocks=4, topk=32, device="cpu")
        got = hisa.select(qb, kb, w, q_pos, method=method, block_size=16, blocks=4, topk=32, device="cpu",
                          q_dtype="bf16", k_dtype="bf16")
        np.testing.assert_array_equal(got, want)
    # Rows see keys [k_start, q_pos]: the last query's selection lies in [100, 299].
    sel = hisa.select(qv, kv, w, q_pos, k_start=np.array([0, 0, 0, 0, 100]), topk=32, device="cpu")
    assert sel[4].min() >= 100 and (sel[0] >= 0).sum() == 11  # query 0 sees 11 keys


def test_compressed_layers_count_rows_and_empty_queries_get_minus_one():
    rng = np.random.default_rng(1)
    k = rng.standard_normal((64, 64)).astype(np.float32)
    q = rng.standard_normal((4, 2, 64)).astype(np.float32)
    w = np.ones((4, 2), dtype=np.float32)
    q_pos = np.array([0, 2, 3, 255], dtype=np.int64)  # tokens: 0 and 2 complete no row of 4
    sel = hisa.select(q, k, w, q_pos, topk=8, compress_ratio=4, device="cpu")
    assert (sel[0] == -1).all() and (sel[1] == -1).all()
    assert list(sel[2]) == [0] + [-1] * 7  # token 3 sees row 0
    assert sel[3].max() <= 63 and (sel[3] >= 0).all()
    stats, per_query = hisa.audit_layer(q, k, w, q_pos, topk=8, block_size=8, blocks=2, compress_ratio=4,
                                        device="cpu")
    assert stats["queries"] == 2 and stats["compress_ratio"] == 4
    assert list(per_query["q_pos"]) == [3, 255]


@pytest.mark.parametrize("bad, message", [
    (dict(q=np.zeros((2, 3, 8), np.float32)), "q: shape [2, 3, 8] does not match [Nq, H, D = 16]"),
    (dict(k=np.zeros((40, 16), np.float64)), "k: unsupported element type float64"),
    (dict(w=np.zeros((2, 2), np.float32)), "w: shape [2, 2] does not match q's [Nq, H] = [2, 3]"),
    (dict(q_pos=np.array([0, 40])), "q_pos: row 1: position 40 is outside [0, L=40)"),
    (dict(k_start=np.array([0, 6])), "k_start: row 1: k_start 6 must lie in [0, q_pos=5]"),
    (dict(k=np.full((40, 16), np.nan, np.float32)), "k: row 0 holds nan at element 0"),
    (dict(k=np.zeros((40, 16), np.uint8), k_dtype="fp8"), "k_scale: missing: fp8 keys need their per-token scales"),
    (dict(k_scale=-np.ones(40, np.float32)), "k_scale: row 0 holds -1 (scales must be finite and positive)"),
    (dict(method="dense"), "method: \"dense\""),
    (dict(forced="sometimes"), "forced: \"sometimes\""),
    (dict(q_dtype="int4"), "q: unknown dtype 'int4'"),
])
def test_bad_input_raises_value_error_with_the_loaders_words(bad, message):
    args = dict(q=np.ones((2, 3, 16), np.float32), k=np.ones((40, 16), np.float32), w=np.ones((2, 3), np.float32),
                q_pos=np.array([3, 5]), topk=4, device="cpu")
    args.update(bad)
    with pytest.raises(ValueError) as e:
        hisa.select(**args)
    assert message in str(e.value)


@pytest.mark.parametrize("bad, message", [
    (dict(topk_ref=np.zeros((2, 4), np.int32), ref_method="hisa", ref_block_size=0),
     "topk_ref: attribute 'block_size' is 0, expected 1 to 16777216"),
    (dict(topk_ref=np.zeros((2, 4), np.int32), ref_forced="bogus"),
     "topk_ref: attribute 'forced' is \"bogus\", expected \"in-budget\" or \"extra\""),
    (dict(topk_ref=np.array([[2 ** 40, 0, 0, 0], [0, 0, 0, 0]])), "topk_ref: holds 1099511627776, outside int32"),
    (dict(topk_ref=np.array([[40, 0, 0, 0], [0, 0, 0, 0]], np.int32)), "topk_ref: row 0: index 40 is outside [-1, L=40)"),
    (dict(compress_ratio=2 ** 62), "compress_ratio: attribute 'compress_ratio' is 4611686018427387904, expected 1 to"),
    (dict(needle=(-5, 3)), "needle: needle range [-5, 3) is not a valid half-open range"),
    (dict(needle=(9, 3)), "needle: needle range [9, 3) is not a valid half-open range"),
])
def test_audit_layer_refuses_what_the_loader_refuses(bad, message):
    args = dict(q=np.ones((2, 3, 16), np.float32), k=np.ones((40, 16), np.float32), w=np.ones((2, 3), np.float32),
                q_pos=np.array([3, 5]), topk=4, block_size=8, blocks=2, device="cpu")
    args.update(bad)
    with pytest.raises(ValueError) as e:
        hisa.audit_layer(**args)
    assert message in str(e.value)


def test_torch_tensors_come_back_as_torch_tensors():
    torch = pytest.importorskip("torch")
    g = torch.Generator().manual_seed(0)
    k = torch.randn(500, 64, generator=g)
    q = torch.randn(6, 4, 64, generator=g)
    w = torch.randn(6, 4, generator=g)
    q_pos = torch.tensor([10, 100, 200, 300, 400, 499])
    for dtype in (torch.float32, torch.float16, torch.bfloat16):
        sel = hisa.select(q.to(dtype), k.to(dtype), w, q_pos, method="hisa", block_size=32, blocks=4, topk=16,
                          device="cpu")
        assert isinstance(sel, torch.Tensor) and sel.dtype == torch.int32
        want = hisa.select(q.to(dtype).float().numpy(), k.to(dtype).float().numpy(), w.numpy(), q_pos.numpy(),
                           method="hisa", block_size=32, blocks=4, topk=16, device="cpu")
        np.testing.assert_array_equal(sel.numpy(), want)
    if torch.cuda.is_available():
        # GPU tensors: the selection comes back on the caller's device, equal to the same engine's on host arrays.
        sel = hisa.select(q.cuda(), k.cuda(), w.cuda(), q_pos.cuda(), method="hisa", block_size=32, blocks=4, topk=16,
                          device="cuda")
        assert sel.is_cuda
        want = hisa.select(q.numpy(), k.numpy(), w.numpy(), q_pos.numpy(), method="hisa", block_size=32, blocks=4,
                           topk=16, device="cuda")
        np.testing.assert_array_equal(sel.cpu().numpy(), want)


def _copies(torch, run):
    """Bytes copied host-to-device and device-to-host while run() runs, as the CUDA profiler (CUPTI, through
    torch.profiler) records every copy of the process, the engine's own included."""
    import tempfile
    from torch.profiler import ProfilerActivity, profile
    with profile(activities=[ProfilerActivity.CUDA]) as prof:
        out = run()
        torch.cuda.synchronize()
    with tempfile.TemporaryDirectory() as d:
        path = os.path.join(d, "trace.json")
        prof.export_chrome_trace(path)
        with open(path) as fh:
            events = json.load(fh)["traceEvents"]
    moved = {"HtoD": 0, "DtoH": 0}
    for e in events:
        if e.get("cat") == "gpu_memcpy":
            for way in moved:
                if way in e.get("name", ""):
                    moved[way] += int(e.get("args", {}).get("bytes", 0))
    return out, moved


def _integer_layer(torch, seed, L, Nq, H, D):
    """q, k, w, k_scale, q_pos (float32 host tensors) of small integers and powers of two: exact in every element
    type, so every engine's scores are exact and equal. The last query sees every key."""
    g = torch.Generator().manual_seed(seed)
    k = torch.randint(-3, 4, (L, D), generator=g).float()
    q = torch.randint(-3, 4, (Nq, H, D), generator=g).float()
    w = torch.randint(-2, 4, (Nq, H), generator=g).float()
    k_scale = 2.0 ** torch.randint(-2, 3, (L,), generator=g).float()
    q_pos = torch.sort(torch.randint(0, L, (Nq,), generator=g)).values
    q_pos[-1] = L - 1
    return q, k, w, k_scale, q_pos


@pytest.mark.parametrize("dtype", ["float32", "bfloat16", "float16", "float8_e4m3fn"])
def test_cuda_tensors_are_read_where_they_are(dtype):
    """The issue's GPU test: CUDA tensors reach the CUDA engine without a copy to the host (the profiler sees
    the host-array path upload them, and the GPU path move only positions, scalars and the selections), and
    the selections equal the CPU engine's."""
    torch = pytest.importorskip("torch")
    if not (torch.cuda.is_available() and hisa.cuda_available()):
        pytest.skip("no CUDA device for the CUDA engine")
    L, Nq, H, D = 16384, 256, 64, 128
    q, k, w, k_scale, q_pos = _integer_layer(torch, 1, L, Nq, H, D)
    t = getattr(torch, dtype)
    q_gpu, k_gpu = q.to(t).cuda(), k.to(t).cuda()
    w_gpu, scale_gpu = w.cuda(), k_scale.cuda()
    operand_bytes = q_gpu.numel() * q_gpu.element_size() + k_gpu.numel() * k_gpu.element_size()
    assert min(q_gpu.numel() * q_gpu.element_size(), k_gpu.numel() * k_gpu.element_size()) >= 2 << 20
    for method in ("flat", "hisa", "block-sparse"):
        args = dict(method=method, block_size=128, blocks=16, topk=512)
        got, moved = _copies(torch, lambda: hisa.select(q_gpu, k_gpu, w_gpu, q_pos, k_scale=scale_gpu, **args))
        assert got.is_cuda and got.device == q_gpu.device
        want = hisa.select(q.numpy(), k.numpy(), w.numpy(), q_pos.numpy(), k_scale=k_scale.numpy(), device="cpu",
                           **args)
        np.testing.assert_array_equal(got.cpu().numpy(), want)
        # What may cross: down, the engine's top-k positions and counts (int32 [Nq, topk] and [Nq]) and the
        # pooled block means ([L/128, D] float32); up, the pooled keys in their kernel form (at most three bf16
        # parts per value), the positions and the selections as the caller's tensor; and small per-chunk lists
        # (64 KiB at most here). q and k are 2 MiB or more each, in every dtype.
        slack, pooled = 64 << 10, (L // 128) * D * 4
        assert moved["DtoH"] <= Nq * (512 + 1) * 4 + pooled + slack, moved
        assert moved["HtoD"] <= got.numel() * 4 + 1.5 * pooled + slack, moved
    # The same arrays from host memory are uploaded, and the profiler sees it: the check above can fail.
    _, moved = _copies(torch, lambda: hisa.select(q.to(t), k.to(t), w, q_pos, k_scale=k_scale, device="cuda",
                                                  method="flat", topk=512))
    assert moved["HtoD"] >= operand_bytes / 2, moved


def _same(got, want, rel, where="stats"):
    """Nested dicts and lists of the audit's statistics equal, floats up to rel (0: exactly)."""
    if isinstance(want, dict):
        assert isinstance(got, dict) and got.keys() == want.keys(), (where, sorted(got), sorted(want))
        for key in want:
            _same(got[key], want[key], rel, f"{where}.{key}")
    elif isinstance(want, list):
        assert isinstance(got, list) and len(got) == len(want), where
        for i, (g, w) in enumerate(zip(got, want)):
            _same(g, w, rel, f"{where}[{i}]")
    elif isinstance(want, float) and isinstance(got, float):
        assert got == pytest.approx(want, rel=rel, abs=rel, nan_ok=True), where
    else:
        assert got == want, where


@pytest.mark.parametrize("dtype", ["float32", "bfloat16", "float16", "float8_e4m3fn"])
def test_an_audit_of_cuda_tensors_reads_them_where_they_are(dtype):
    """audit_layer and Audit.add on CUDA tensors: the engine's audit, the certificates' bounds and the report's
    pictures run on their GPU, and only their results cross (the profiler sees the host-array path upload q
    and k, so the check can fail). The statistics and per-query columns are the same engine's on host arrays
    exactly, and the CPU engine's up to the order of floating-point sums."""
    torch = pytest.importorskip("torch")
    if not (torch.cuda.is_available() and hisa.cuda_available()):
        pytest.skip("no CUDA device for the CUDA engine")
    L, Nq, H, D = 16384, 256, 64, 128
    q, k, w, k_scale, q_pos = _integer_layer(torch, 2, L, Nq, H, D)
    t = getattr(torch, dtype)
    q_gpu, k_gpu = q.to(t).cuda(), k.to(t).cuda()
    w_gpu, scale_gpu = w.cuda(), k_scale.cuda()
    assert min(q_gpu.numel() * q_gpu.element_size(), k_gpu.numel() * k_gpu.element_size()) >= 2 << 20
    args = dict(block_size=128, blocks=8, topk=128)
    audit = hisa.Audit(worst=4, pictures=2, per_query=True, device="cuda", **args)
    (stats, per_query), moved = _copies(torch, lambda: audit.add(q_gpu, k_gpu, w_gpu, q_pos, layer=0,
                                                                 k_scale=scale_gpu, needle=(5000, 5100)))
    # What may cross: down, per query the top-k positions and scores of DSA and HISA (8 bytes each), J, the
    # blocks' best scores and bounds (4 bytes per block each) and a few scalars, the pooled block means, and for
    # each picture its score row; up, the segment lists (8 bytes per segment), the pooled keys in their kernel
    # form, positions. q and k are 2 MiB or more each, in every dtype.
    blocks, slack = L // 128, 64 << 10
    pooled = blocks * D * 4
    assert moved["DtoH"] <= Nq * (2 * 128 * 8 + 3 * blocks * 4 + 64) + pooled + 2 * (L * 4 + 128 * 16) + slack, moved
    assert moved["HtoD"] <= Nq * (3 * 8 * 8 + 64) + 1.5 * pooled + slack, moved
    host = hisa.Audit(worst=4, pictures=2, per_query=True, device="cuda", **args)
    want_stats, want_rows = host.add(q.to(t), k.to(t), w, q_pos, layer=0, k_scale=k_scale, needle=(5000, 5100))
    _same(stats, want_stats, 0)
    assert per_query.keys() == want_rows.keys()
    for column in want_rows:
        np.testing.assert_array_equal(per_query[column], want_rows[column], err_msg=column)
    assert audit.table() == host.table()
    assert len(audit.result()["layers"]) == 1
    cpu_stats, cpu_rows = hisa.audit_layer(q.to(t).float().numpy(), k.to(t).float().numpy(), w.numpy(), q_pos.numpy(),
                                           k_scale=k_scale.numpy(), needle=(5000, 5100), worst=4, device="cpu", **args)
    cpu_stats["engine"] = stats["engine"]
    _same(stats, cpu_stats, 1e-9)
    for column in cpu_rows:
        np.testing.assert_allclose(per_query[column], cpu_rows[column], rtol=1e-9, err_msg=column)
    one_stats, _ = hisa.audit_layer(q_gpu, k_gpu, w_gpu, q_pos, k_scale=scale_gpu, needle=(5000, 5100), worst=4,
                                    **args)
    _same(one_stats, want_stats, 0)
    # The same arrays from host memory are uploaded, and the profiler sees it.
    _, moved = _copies(torch, lambda: hisa.audit_layer(q.to(t), k.to(t), w, q_pos, k_scale=k_scale, device="cuda",
                                                       **args))
    operand_bytes = q_gpu.numel() * q_gpu.element_size() + k_gpu.numel() * k_gpu.element_size()
    assert moved["HtoD"] >= operand_bytes / 2, moved


def test_topk_ref_of_cuda_tensors_is_judged_where_they_are():
    """A stack's topk_ref given with CUDA tensors is judged on their GPU (the engine re-scores the differing
    tokens there): only scores cross, and the judgement is the same engine's on host arrays."""
    torch = pytest.importorskip("torch")
    if not (torch.cuda.is_available() and hisa.cuda_available()):
        pytest.skip("no CUDA device for the CUDA engine")
    L, Nq, H, D = 16384, 256, 64, 128
    q, k, w, k_scale, q_pos = _integer_layer(torch, 3, L, Nq, H, D)
    q_gpu, k_gpu, w_gpu, scale_gpu = q.bfloat16().cuda(), k.bfloat16().cuda(), w.cuda(), k_scale.cuda()
    args = dict(block_size=128, blocks=8, topk=128)
    # The stack: flat top-128 with each row's best token swapped for another visible one.
    ref = hisa.select(q_gpu, k_gpu, w_gpu, q_pos, k_scale=scale_gpu, method="flat", topk=128).cpu().numpy()
    for i in range(Nq):
        row = ref[i][ref[i] >= 0]
        free = np.setdiff1d(np.arange(int(q_pos[i]) + 1), row)
        if len(free):
            row[0] = free[0]
        ref[i, :len(row)] = np.sort(row)
    (stats, per_query), moved = _copies(torch, lambda: hisa.audit_layer(
        q_gpu, k_gpu, w_gpu, q_pos, k_scale=scale_gpu, topk_ref=ref, ref_method="flat", **args))
    blocks, slack = L // 128, 64 << 10
    pooled = blocks * D * 4
    judged = Nq * 256  # a few re-scored tokens and their magnitudes per query
    assert moved["DtoH"] <= Nq * (2 * 128 * 8 + 3 * blocks * 4 + 64) + pooled + judged + slack, moved
    assert moved["HtoD"] <= Nq * (3 * 8 * 8 + 64) + 1.5 * pooled + judged + slack, moved
    want_stats, want_rows = hisa.audit_layer(q.bfloat16(), k.bfloat16(), w, q_pos, k_scale=k_scale, topk_ref=ref,
                                             ref_method="flat", device="cuda", **args)
    _same(stats, want_stats, 0)
    for column in want_rows:
        np.testing.assert_array_equal(per_query[column], want_rows[column], err_msg=column)
    assert stats["ref_iou_mean"] < 1 and stats["ref_unexplained"] + stats["ref_near_ties"] + stats["ref_tie_swaps"] > 0


def test_cuda_tensors_get_the_loaders_words():
    torch = pytest.importorskip("torch")
    if not (torch.cuda.is_available() and hisa.cuda_available()):
        pytest.skip("no CUDA device for the CUDA engine")
    k = torch.randn(300, 64, device="cuda")
    q = torch.randn(4, 2, 64, device="cuda")
    w = torch.ones(4, 2, device="cuda")
    q_pos = torch.tensor([10, 100, 200, 299])
    bad = q.clone()
    bad[2, 1, 7] = float("inf")
    with pytest.raises(ValueError, match=re.escape("q: row 2 holds inf at element 71 (NaN and Inf")):
        hisa.select(bad, k, w, q_pos, topk=8)
    scale = torch.ones(300, device="cuda")
    scale[3] = -1.0
    with pytest.raises(ValueError, match=re.escape("k_scale: row 3 holds -1")):
        hisa.select(q, k, w, q_pos, k_scale=scale, topk=8)
    with pytest.raises(ValueError, match=re.escape("w: shape [4, 3] does not match q's [Nq, H] = [4, 2]")):
        hisa.select(q, k, torch.ones(4, 3, device="cuda"), q_pos, topk=8)
    with pytest.raises(ValueError, match=re.escape("q_pos: row 3: position 300 is outside [0, L=300)")):
        hisa.select(q, k, w, torch.tensor([10, 100, 200, 300]), topk=8)
