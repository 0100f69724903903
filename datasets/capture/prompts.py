"""Prompt builders for captures: needle-in-a-haystack (RULER style) and LongBench-style JSONL records.

Everything is generated or read from the user's files; nothing is fetched. A builder returns token ids and
the sample attributes of datasets/FORMAT.md (task, context_length, depth_percent, needle_begin/needle_end,
length_bucket).
"""
import json
import random

# A fixed vocabulary for the haystack: plain, varied sentences, generated deterministically from a seed.
_SUBJECTS = ["The river", "A small town", "The old library", "Every traveller", "The committee", "A gardener",
             "The northern road", "Our neighbour", "The museum guide", "A quiet student", "The harbour master",
             "The weather station", "A local baker", "The school choir", "The night train", "A painter"]
_VERBS = ["described", "remembered", "measured", "repaired", "visited", "recorded", "admired", "questioned",
          "followed", "collected", "explained", "organised", "watched", "planted", "studied", "carried"]
_OBJECTS = ["the stone bridge", "a map of the valley", "the autumn festival", "several wooden boats",
            "the price of bread", "an unusual bird", "the long winter", "a box of letters", "the village clock",
            "the morning market", "a forgotten song", "the hills beyond the lake", "a set of brass keys",
            "the census records", "the broken fence", "a recipe for soup"]
_ENDINGS = ["before noon.", "with great care.", "for the third time.", "as the sun went down.",
            "without telling anyone.", "during the storm.", "in the spring.", "after a long debate.",
            "for the visitors.", "at the edge of town."]


def haystack_sentences(count, seed=0):
    rng = random.Random(seed)
    return [" ".join([rng.choice(_SUBJECTS), rng.choice(_VERBS), rng.choice(_OBJECTS), rng.choice(_ENDINGS)])
            for _ in range(count)]


class HashTokenizer:
    """For tiny random models, which ship no tokenizer: words map to ids by a stable hash (crc32)."""

    def __init__(self, vocab_size):
        self.vocab_size = vocab_size

    def encode(self, text):
        import zlib
        return [2 + zlib.crc32(w.encode()) % (self.vocab_size - 2) for w in text.split()]


def encode(tokenizer, text):
    if isinstance(tokenizer, HashTokenizer):
        return tokenizer.encode(text)
    return tokenizer.encode(text, add_special_tokens=False)


def niah(tokenizer, context_length, depth_percent, seed=0, needle_value=None):
    """A haystack of about `context_length` tokens with a needle sentence at depth_percent of it, then the
    question. The needle's token span is exact: the prompt is the concatenation of separately encoded parts."""
    rng = random.Random(seed)
    value = needle_value if needle_value is not None else rng.randrange(1000, 9999)
    needle = encode(tokenizer, f" The special magic number for the archive is {value}. ")
    question = encode(tokenizer, " What is the special magic number for the archive? The special magic number is")
    sentences = haystack_sentences(max(8, context_length // 4), seed)
    hay = []
    for s in sentences:
        hay += encode(tokenizer, " " + s)
        if len(hay) >= context_length - len(needle) - len(question):
            break
    hay = hay[: max(0, context_length - len(needle) - len(question))]
    at = int(round(len(hay) * depth_percent / 100.0))
    ids = hay[:at] + needle + hay[at:] + question
    attrs = {"task": "niah", "context_length": int(context_length), "depth_percent": float(depth_percent),
             "needle_begin": at, "needle_end": at + len(needle), "seq_len": len(ids)}
    return ids, attrs


def length_bucket(tokens):
    return "0-4k" if tokens < 4096 else ("4-8k" if tokens < 8192 else "8k+")


def longbench(tokenizer, jsonl_path, max_records=None, max_tokens=None):
    """LongBench-style records from the user's JSONL: fields `context` and `input` (the question), optional
    `dataset` (the task name) and `_id`. Yields (name, ids, attrs)."""
    with open(jsonl_path, encoding="utf-8") as f:
        for n, line in enumerate(f):
            if max_records is not None and n >= max_records:
                break
            if not line.strip():
                continue
            rec = json.loads(line)
            if "context" not in rec or "input" not in rec:
                raise ValueError(f"{jsonl_path}: line {n + 1}: a record needs 'context' and 'input'")
            ids = encode(tokenizer, rec["context"]) + encode(tokenizer, "\n\nQuestion: " + rec["input"] + "\nAnswer:")
            if max_tokens is not None:
                ids = ids[-max_tokens:]  # keep the question: truncate the context from the left
            task = "longbench/" + str(rec.get("dataset", "unknown"))
            name = str(rec.get("_id", f"record_{n}"))
            yield name, ids, {"task": task, "context_length": len(ids), "length_bucket": length_bucket(len(ids)),
                              "seq_len": len(ids)}
