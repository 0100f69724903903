"""hisa.hooks: a tiny DeepSeek-V3.2, GLM-5 and DeepSeek-V4 model audited live by the forward hook gives what
`hisa audit` finds in a capture of the same model and prompt (datasets/capture/hisa_capture.py), and the model's
own top-k is judged explained. Needs torch and transformers (the GPU machine has them); skipped without."""
import json
import os
import subprocess
import sys

import pytest

import hisa
import hisa.hooks

HISA = os.environ.get("HISA_BINARY", "hisa")
CAPTURE = os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "..", "datasets", "capture")


def test_query_positions_spellings():
    query_positions = hisa.hooks.query_positions  # the capture tool's --queries, shared
    assert list(query_positions("all", 4)) == [0, 1, 2, 3]
    assert list(query_positions("last:2", 5)) == [3, 4]
    assert list(query_positions("every:4", 10)) == [0, 4, 8, 9]
    assert list(query_positions("needle:1", 40, (3, 5))) == [2, 3, 4, 5] + list(range(8, 40))
    for bad in ("last", "every:0", "first:3", "all:2"):
        with pytest.raises(ValueError, match="expected"):
            query_positions(bad, 10)
    with pytest.raises(ValueError, match="needs the prompt's needle"):
        query_positions("needle:4", 10)


@pytest.mark.parametrize("model_type", ["deepseek_v32", "glm_moe_dsa", "deepseek_v4"])
def test_the_hook_audits_what_hisa_audit_finds_in_a_capture(tmp_path, model_type):
    torch = pytest.importorskip("torch")
    pytest.importorskip("transformers")
    sys.path.insert(0, CAPTURE)
    import hisa_capture
    import prompts
    devices = ["cpu"] + (["cuda"] if torch.cuda.is_available() else [])
    for device in devices:
        dump, js = str(tmp_path / f"{device}.h5"), str(tmp_path / f"{device}.json")
        argv = ["--tiny", model_type, "-o", dump, "--niah", "384:30", "--device", device]
        hisa_capture.capture(hisa_capture.parse_args(argv))
        flags = ["--device", "cpu", "--block-size", "16", "--blocks", "4", "--worst", "3"]
        r = subprocess.run([HISA, "audit", dump, *flags, "--json", js], capture_output=True, text=True)
        assert r.returncode == 0, r.stderr
        with open(js) as fh:
            want = json.load(fh)

        model, tokenizer, _ = hisa_capture.load_model(hisa_capture.parse_args(argv))
        ids, attrs = prompts.niah(tokenizer, 384, 30.0, seed=0)
        with hisa.hooks.audit_model(model, block_size=16, blocks=4, device="cpu", worst=3) as live:
            live.sample = "niah_384_d30"
            live.needle = (attrs["needle_begin"], attrs["needle_end"])
            with torch.no_grad():
                model(input_ids=torch.tensor([ids], device=device), use_cache=False)
        with pytest.raises(ValueError, match="not the model's index_topk"):
            with hisa.hooks.audit_model(model, audit=hisa.Audit(topk=7, device="cpu")):
                pass
        got = live.audit.result()
        assert live.calls == 1 and live.layers_audited == len(got["layers"]) >= 2
        got.pop("files"), want.pop("files")
        assert got == want, f"{model_type} on {device}"
        for layer in got["layers"]:
            assert layer["ref_unexplained"] == 0  # the model's own top-k is the flat rule's, up to exact ties
            if model_type == "deepseek_v4":
                assert layer["compress_ratio"] == 4
