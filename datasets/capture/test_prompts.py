#!/usr/bin/env python3
"""The prompt builders, without torch: the needle's token span is exact, LongBench records carry their task
and length bucket, bad records are errors. Runs on plain python3 (no numpy)."""
import os
import sys
import tempfile
import unittest

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, HERE)
import prompts  # noqa: E402


class PromptTest(unittest.TestCase):
    def setUp(self):
        self.tok = prompts.HashTokenizer(512)

    def test_needle_span_is_the_needle(self):
        needle = self.tok.encode(" The special magic number for the archive is 4242. ")
        for depth in (0, 25, 50, 100):
            ids, attrs = prompts.niah(self.tok, 600, depth, seed=3, needle_value=4242)
            self.assertEqual(ids[attrs["needle_begin"]:attrs["needle_end"]], needle)
            self.assertEqual(attrs["seq_len"], len(ids))
            self.assertLessEqual(len(ids), 600)
            self.assertGreater(len(ids), 500)
            self.assertEqual(attrs["task"], "niah")
            self.assertEqual(attrs["depth_percent"], float(depth))
        # Deeper needles sit later; the question always ends the prompt.
        early = prompts.niah(self.tok, 600, 10, seed=3)[1]["needle_begin"]
        late = prompts.niah(self.tok, 600, 90, seed=3)[1]["needle_begin"]
        self.assertLess(early, late)

    def test_deterministic(self):
        self.assertEqual(prompts.niah(self.tok, 300, 50, seed=1), prompts.niah(self.tok, 300, 50, seed=1))
        self.assertNotEqual(prompts.niah(self.tok, 300, 50, seed=1)[0], prompts.niah(self.tok, 300, 50, seed=2)[0])

    def test_longbench_records(self):
        records = list(prompts.longbench(self.tok, os.path.join(HERE, "sample_longbench.jsonl")))
        self.assertEqual([r[0] for r in records], ["hotpot_0", "qasper_0"])
        self.assertEqual(records[0][2]["task"], "longbench/hotpotqa")
        self.assertEqual(records[0][2]["length_bucket"], "0-4k")
        self.assertEqual(records[0][2]["seq_len"], len(records[0][1]))
        truncated = list(prompts.longbench(self.tok, os.path.join(HERE, "sample_longbench.jsonl"), max_tokens=20))
        self.assertEqual(len(truncated[0][1]), 20)
        # The question survives truncation: it is at the end.
        self.assertEqual(truncated[0][1][-3:], records[0][1][-3:])
        self.assertEqual(prompts.length_bucket(5000), "4-8k")
        self.assertEqual(prompts.length_bucket(9000), "8k+")

    def test_bad_record_names_the_line(self):
        with tempfile.NamedTemporaryFile("w", suffix=".jsonl", delete=False) as f:
            f.write('{"context": "x", "input": "y"}\n{"context": "no question"}\n')
        try:
            with self.assertRaisesRegex(ValueError, "line 2"):
                list(prompts.longbench(self.tok, f.name))
        finally:
            os.unlink(f.name)


if __name__ == "__main__":
    unittest.main()
