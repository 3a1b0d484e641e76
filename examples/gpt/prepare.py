#!/usr/bin/env python3
"""Turns a text into the corpus examples/gpt/gpt.lb trains on (Python 3 stdlib only).

    python3 examples/gpt/prepare.py OUT_DIR [FILE ...]

Reads the files (default: the project's own docs/*.md, which every checkout
has), and writes
    OUT_DIR/ids.npy     i32[N]: one token id per character
    OUT_DIR/vocab.json  the characters, in id order (id i is vocab[i])
and prints the corpus size and its unigram entropy in nats (the loss of a
model that knows only the characters' frequencies).

The vocabulary is the V - 1 most frequent characters (V = 96, the size
gpt.lb is compiled for), sorted, plus one id for every other character,
shown as "?" (the vocabulary's last entry, "\u0000" in vocab.json).
"""
import glob
import json
import math
import os
import struct
import sys
from collections import Counter

V = 96


def write_npy_i32(path, values):
    header = "{'descr': '<i4', 'fortran_order': False, 'shape': (%d,), }" % len(values)
    header += " " * (63 - (len(header) + 10) % 64) + "\n"   # pad to a multiple of 64
    with open(path, "wb") as f:
        f.write(b"\x93NUMPY\x01\x00" + struct.pack("<H", len(header)) + header.encode("latin1"))
        f.write(struct.pack("<%di" % len(values), *values))


def main():
    out = sys.argv[1]
    root = os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "..")
    files = sys.argv[2:] or sorted(glob.glob(os.path.join(root, "docs", "*.md")))
    text = "".join(open(p, encoding="utf-8").read() for p in files)
    counts = Counter(text)
    kept = sorted(c for c, _ in counts.most_common(V - 1))
    vocab = kept + ["\u0000"]                      # the last id: any other character
    index = {c: i for i, c in enumerate(kept)}
    ids = [index.get(c, V - 1) for c in text]
    os.makedirs(out, exist_ok=True)
    write_npy_i32(os.path.join(out, "ids.npy"), ids)
    with open(os.path.join(out, "vocab.json"), "w") as f:
        json.dump(vocab, f)
    n = len(ids)
    freq = Counter(ids)
    entropy = -sum(c / n * math.log(c / n) for c in freq.values())
    with open(os.path.join(out, "entropy.txt"), "w") as f:
        f.write("%.4f\n" % entropy)
    print("corpus: %d characters from %d files, %d distinct (%d kept), unigram entropy %.3f nats"
          % (n, len(files), len(counts), len(kept), entropy))


if __name__ == "__main__":
    main()
