#!/usr/bin/env python3
"""write_topk_ref (datasets/hisa_h5.py) with numpy and h5py only: padding, the attributes that declare the
rule, every refusal, replace. When HISA_BINARY points at the built `hisa`: a synthetic dump gets a flat
top-k computed here in numpy as its topk_ref, and `hisa audit` must find it identical (or at most near ties).

    /usr/bin/python3 datasets/test_hisa_h5.py
"""
import json
import os
import subprocess
import sys
import tempfile
import unittest

import h5py
import numpy as np

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from hisa_h5 import write_topk_ref  # noqa: E402


class WriteTopkRefTest(unittest.TestCase):
    def setUp(self):
        self.tmp = tempfile.TemporaryDirectory()
        self.addCleanup(self.tmp.cleanup)
        self.f = h5py.File(os.path.join(self.tmp.name, "t.h5"), "w")
        self.addCleanup(self.f.close)
        self.g = self.f.create_group("s/layer_0")
        self.g.create_dataset("k", data=np.zeros((10, 4), np.float32))
        self.g.create_dataset("q_pos", data=np.array([2, 5, 9], np.int64))
        self.sel = np.array([[2, 0], [5, -1], [-1, -1]], np.int64)

    def test_pads_to_index_topk_as_int32(self):
        d = write_topk_ref(self.g, self.sel, 4)
        self.assertEqual(d.dtype, np.int32)
        self.assertEqual(d.shape, (3, 4))
        np.testing.assert_array_equal(d[...], [[2, 0, -1, -1], [5, -1, -1, -1], [-1, -1, -1, -1]])
        self.assertEqual(d.compression, "gzip")
        self.assertEqual(d.chunks[1], 4)  # whole rows
        # The order of a row is kept: topk_ref may be in any order.
        d = write_topk_ref(self.g, np.array([[0, 2, 1, 3]] * 3, np.int32), 4, replace=True)
        np.testing.assert_array_equal(d[0], [0, 2, 1, 3])

    def test_any_integer_type_and_empty_shapes(self):
        for dtype in (np.int8, np.uint16, np.int32, np.int64):
            d = write_topk_ref(self.g, np.array([[1], [2], [3]], dtype), 2, replace=True)
            np.testing.assert_array_equal(d[...], [[1, -1], [2, -1], [3, -1]])
        d = write_topk_ref(self.g, np.zeros((3, 0), np.int32), 2, replace=True)
        np.testing.assert_array_equal(d[...], np.full((3, 2), -1))
        g = self.f.create_group("s/layer_1")  # no q_pos: any number of rows, here none
        d = write_topk_ref(g, np.zeros((0, 3), np.int32), 5)
        self.assertEqual(d.shape, (0, 5))

    def test_declared_attributes(self):
        d = write_topk_ref(self.g, self.sel, 4, method="hisa", block_size=16, blocks=4, forced="extra",
                           pool_precision="fp8")
        self.assertEqual(dict(d.attrs), {"method": "hisa", "block_size": 16, "blocks": 4, "forced": "extra",
                                         "pool_precision": "fp8"})
        for name in ("block_size", "blocks"):
            self.assertEqual(d.attrs[name].dtype, np.int64)
            self.assertEqual(d.attrs.get_id(name).shape, ())  # a scalar, not an array
        for name in ("method", "forced", "pool_precision"):
            info = h5py.check_string_dtype(d.attrs.get_id(name).dtype)
            self.assertEqual((info.encoding, info.length), ("utf-8", None))  # variable-length UTF-8
            self.assertEqual(d.attrs.get_id(name).shape, ())
        # numpy integers are integers too
        d = write_topk_ref(self.g, self.sel, 4, method="block-sparse", block_size=np.int32(2), replace=True)
        self.assertEqual(dict(d.attrs), {"method": "block-sparse", "block_size": 2})

    def test_absent_attributes_are_omitted(self):
        d = write_topk_ref(self.g, self.sel, 4)
        self.assertEqual(dict(d.attrs), {"method": "flat"})
        d = write_topk_ref(self.g, self.sel, 4, method=None, replace=True)
        self.assertEqual(dict(d.attrs), {})
        d = write_topk_ref(self.g, self.sel, 4, method="hisa", replace=True)
        self.assertEqual(dict(d.attrs), {"method": "hisa"})
        d = write_topk_ref(self.g, self.sel, 4, method="hisa", blocks=8, replace=True)
        self.assertEqual(dict(d.attrs), {"method": "hisa", "blocks": 8})

    def assert_refused(self, message, *args, **kwargs):
        with self.assertRaises(ValueError) as cm:
            write_topk_ref(self.g, *args, **kwargs)
        self.assertIn(message, str(cm.exception))
        self.assertNotIn("topk_ref", self.g)  # nothing written

    def test_refusals(self):
        sel = self.sel
        self.assert_refused("2-D", sel[0], 4)
        self.assert_refused("2-D", sel[None], 4)
        self.assert_refused("integers", sel.astype(np.float32), 4)
        self.assert_refused("integers", sel > 0, 4)
        self.assert_refused("integers", np.array([["1"], ["2"], ["3"]]), 4)
        self.assert_refused("-2", np.array([[1], [-2], [3]]), 4)
        self.assert_refused("L = 10", np.array([[1], [10], [3]]), 4)
        self.assert_refused("more than index_topk = 1", sel, 1)
        self.assert_refused("index_topk", sel, 0)
        self.assert_refused("index_topk", sel, "4")
        self.assert_refused("q_pos has 3", sel[:2], 4)
        self.assert_refused("method", sel, 4, method="dsa")
        self.assert_refused("method", sel, 4, method="HISA")
        self.assert_refused("forced", sel, 4, method="hisa", forced="paper")
        self.assert_refused("pool_precision", sel, 4, method="hisa", pool_precision="bf16")
        for name in ("block_size", "blocks"):
            for bad in (0, -1, 2.5, "16", True, 2**24 + 1):
                self.assert_refused(name, sel, 4, method="hisa", **{name: bad})
        for name, value in (("block_size", 16), ("blocks", 4), ("forced", "extra"), ("pool_precision", "fp8")):
            self.assert_refused("only apply to method hisa or block-sparse", sel, 4, **{name: value})
            self.assert_refused("only apply to method hisa or block-sparse", sel, 4, method=None, **{name: value})

    def test_replace(self):
        write_topk_ref(self.g, self.sel, 4, method="hisa", block_size=16)
        with self.assertRaises(ValueError) as cm:
            write_topk_ref(self.g, self.sel[:, :1], 4)
        self.assertIn("exists already", str(cm.exception))
        self.assertIn("/s/layer_0/topk_ref", str(cm.exception))
        d = self.g["topk_ref"]  # untouched
        self.assertEqual(d[0, 1], 0)
        self.assertEqual(dict(d.attrs), {"method": "hisa", "block_size": 16})
        # A refused replacement leaves the old one too.
        with self.assertRaises(ValueError):
            write_topk_ref(self.g, self.sel, 4, method="bogus", replace=True)
        self.assertEqual(self.g["topk_ref"][0, 1], 0)
        d = write_topk_ref(self.g, self.sel[:, :1], 3, replace=True)
        np.testing.assert_array_equal(d[...], [[2, -1, -1], [5, -1, -1], [-1, -1, -1]])
        self.assertEqual(dict(d.attrs), {"method": "flat"})  # the old attributes went with the old dataset

    def test_no_torch_needed(self):
        # The module never imports torch itself (so it runs without it); with torch loaded, a tensor is accepted.
        code = ("import sys, h5py, numpy as np; sys.path.insert(0, sys.argv[1]); from hisa_h5 import write_topk_ref; "
                "f = h5py.File(sys.argv[2], 'w'); write_topk_ref(f.create_group('g'), np.zeros((2, 1), np.int32), 2); "
                "f.close(); print('torch' in sys.modules)")
        r = subprocess.run([sys.executable, "-c", code, os.path.dirname(os.path.abspath(__file__)),
                            os.path.join(self.tmp.name, "n.h5")], capture_output=True, text=True)
        self.assertEqual((r.returncode, r.stdout.strip()), (0, "False"), r.stderr)
        try:
            import torch
        except ImportError:
            self.skipTest("torch is not installed")
        d = write_topk_ref(self.g, torch.tensor([[1, 2], [3, -1], [-1, -1]], dtype=torch.int32), 3)
        np.testing.assert_array_equal(d[...], [[1, 2, -1], [3, -1, -1], [-1, -1, -1]])
        if torch.cuda.is_available():
            d = write_topk_ref(self.g, torch.tensor([[4], [5], [6]], device="cuda"), 3, replace=True)
            np.testing.assert_array_equal(d[...], [[4, -1, -1], [5, -1, -1], [6, -1, -1]])


# ----- against the built hisa --------------------------------------------------------------------------------

def e4m3_value(code):
    sign = -1.0 if code & 0x80 else 1.0
    e, m = (code >> 3) & 0xF, code & 0x7
    return sign * (m * 2.0 ** -9 if e == 0 else (8 + m) * 2.0 ** (e - 10))


E4M3 = np.array([e4m3_value(c) for c in range(256)], np.float32)


def read_values(dset):
    """Decoded float32 values of q or k in any encoding of FORMAT.md."""
    encoding = dset.attrs.get("encoding")
    if isinstance(encoding, bytes):
        encoding = encoding.decode()
    raw = dset[...]
    if encoding == "float8_e4m3fn":
        return E4M3[raw.view(np.uint8)]
    if encoding == "bfloat16":
        return (raw.view(np.uint16).astype(np.uint32) << 16).view(np.float32)
    return np.asarray(raw, np.float32)  # float32, float16, and the custom-float bfloat16 h5py reads as float32


def flat_topk(layer, k_top):
    """DSA's top-k of every query from the file's values, scores in float32 (docs/definitions.md)."""
    q, k = read_values(layer["q"]), read_values(layer["k"])
    w = np.asarray(layer["w"][...], np.float32)
    q_pos = layer["q_pos"][...]
    k_start = layer["k_start"][...] if "k_start" in layer else np.zeros_like(q_pos)
    k_scale = np.asarray(layer["k_scale"][...], np.float32) if "k_scale" in layer else None
    out = np.full((len(q_pos), k_top), -1, np.int32)
    for i, (t, s0) in enumerate(zip(q_pos, k_start)):
        dots = np.matmul(q[i], k[s0:t + 1].T)                      # [H, n] float32
        row = np.matmul(w[i], np.maximum(dots, np.float32(0)))       # [n] float32
        if k_scale is not None:
            row = k_scale[s0:t + 1] * row
        row = np.where(np.isnan(row), np.float32(-np.inf), row)
        order = np.lexsort((np.arange(len(row)), -row))[:k_top]     # higher score, then lower position
        chosen = np.sort(order) + s0
        out[i, :len(chosen)] = chosen
    return out


@unittest.skipUnless(os.environ.get("HISA_BINARY"), "HISA_BINARY is not set")
class AuditOfANumpyTopkTest(unittest.TestCase):
    def run_hisa(self, *args):
        r = subprocess.run([os.environ["HISA_BINARY"], *args], capture_output=True, text=True)
        self.assertEqual(r.returncode, 0, f"hisa {' '.join(args)}: {r.stderr}")
        return r

    def test_flat_topk_from_numpy_is_what_hisa_selects(self):
        cases = [("bf16", []), ("fp8", ["--dtype", "fp8"]), ("bf16-packed", ["--packed", "2"])]
        with tempfile.TemporaryDirectory() as tmp:
            for name, extra in cases:
                with self.subTest(dump=name):
                    path, js = os.path.join(tmp, f"{name}.h5"), os.path.join(tmp, f"{name}.json")
                    self.run_hisa("synth", "-o", path, "--profile", "mixed", "--seq-len", "1024", "--layers", "1",
                                  "--heads", "4", "--head-dim", "64", "--topk", "64", "--queries", "sample:8", *extra)
                    with h5py.File(path, "r+") as f:
                        k_top = int(f.attrs["index_topk"])
                        for sample in f.values():
                            for layer in sample.values():
                                write_topk_ref(layer, flat_topk(layer, k_top), k_top, method="flat", replace=True)
                    self.run_hisa("audit", path, "--device", "cpu", "--json", js)
                    with open(js) as fh:
                        layers = json.load(fh)["layers"]
                    self.assertTrue(layers)
                    for layer in layers:
                        seen = {key: layer.get(key) for key in ("ref_method", "ref_iou_mean", "ref_iou_min",
                                                                "ref_tie_swaps", "ref_unexplained")}
                        print(f"{name}: {seen}", file=sys.stderr)
                        if "ref_method" in layer:
                            self.assertEqual(layer["ref_method"], "flat")
                        # numpy's float32 sums run in another order than hisa's: a token may swap with one
                        # whose score is equal to within rounding, which the audit explains; nothing else.
                        if layer["ref_iou_mean"] != 1:
                            self.assertEqual(layer["ref_unexplained"], 0, layer)
            # And the check can fail: a selection missing each query's first token is not explained.
            path, js = os.path.join(tmp, "bf16.h5"), os.path.join(tmp, "bf16-bad.json")
            with h5py.File(path, "r+") as f:
                for sample in f.values():
                    for layer in sample.values():
                        ref = layer["topk_ref"][...]
                        write_topk_ref(layer, ref[:, 1:], ref.shape[1], method="flat", replace=True)
            self.run_hisa("audit", path, "--device", "cpu", "--json", js)
            with open(js) as fh:
                for layer in json.load(fh)["layers"]:
                    self.assertLess(layer["ref_iou_mean"], 1)
                    self.assertGreater(layer["ref_unexplained"], 0)


if __name__ == "__main__":
    unittest.main()
