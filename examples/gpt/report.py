#!/usr/bin/env python3
"""Helpers of train.sh (Python 3 stdlib only).

    python3 report.py plot LOSSES.npy ENTROPY OUT.svg   the loss curve as an SVG
    python3 report.py decode IDS.npy VOCAB.json         token ids back to text
"""
import ast
import json
import struct
import sys


def read_npy(path):
    """A 1-D little-endian f32 or i32 .npy file as a list."""
    with open(path, "rb") as f:
        data = f.read()
    assert data[:6] == b"\x93NUMPY", path
    major = data[6]
    hlen, start = (struct.unpack("<H", data[8:10])[0], 10) if major == 1 else (struct.unpack("<I", data[8:12])[0], 12)
    header = ast.literal_eval(data[start:start + hlen].decode("latin1"))
    code = {"<f4": "f", "<i4": "i"}[header["descr"]]
    (n,) = header["shape"]
    return list(struct.unpack("<%d%s" % (n, code), data[start + hlen:start + hlen + 4 * n]))


def plot(losses_path, entropy, out):
    ys = read_npy(losses_path)
    entropy = float(entropy)
    w, h, m = 640, 360, 50
    top = max(max(ys), entropy) * 1.05
    sx = lambda i: m + (w - 2 * m) * i / max(len(ys) - 1, 1)
    sy = lambda y: h - m - (h - 2 * m) * y / top
    pts = " ".join("%.1f,%.1f" % (sx(i), sy(y)) for i, y in enumerate(ys))
    grid = []
    for k in range(int(top) + 1):
        grid.append('<line x1="%d" y1="%.1f" x2="%d" y2="%.1f" stroke="#ddd"/>' % (m, sy(k), w - m, sy(k)))
        grid.append('<text x="%d" y="%.1f" font-size="11" text-anchor="end">%d</text>' % (m - 6, sy(k) + 4, k))
    svg = """<svg xmlns="http://www.w3.org/2000/svg" width="%d" height="%d" font-family="sans-serif">
<rect width="100%%" height="100%%" fill="white"/>
%s
<line x1="%d" y1="%.1f" x2="%d" y2="%.1f" stroke="#c33" stroke-dasharray="6,4"/>
<text x="%d" y="%.1f" font-size="11" fill="#c33" text-anchor="end">unigram entropy %.3f</text>
<polyline points="%s" fill="none" stroke="#26a" stroke-width="1.5"/>
<text x="%d" y="%d" font-size="12" text-anchor="middle">step (%d steps; last loss %.3f)</text>
<text x="14" y="%d" font-size="12" transform="rotate(-90 14 %d)" text-anchor="middle">cross-entropy (nats)</text>
<text x="%d" y="24" font-size="14" text-anchor="middle">examples/gpt: training loss</text>
</svg>
""" % (w, h, "\n".join(grid), m, sy(entropy), w - m, sy(entropy), w - m, sy(entropy) - 5, entropy,
       pts, w // 2, h - 14, len(ys), ys[-1], h // 2, h // 2, w // 2)
    with open(out, "w") as f:
        f.write(svg)


def decode(ids_path, vocab_path):
    vocab = json.load(open(vocab_path))
    text = "".join(vocab[i] if vocab[i] != "\u0000" else "?" for i in read_npy(ids_path))
    sys.stdout.write(text + "\n")


if __name__ == "__main__":
    if sys.argv[1] == "plot":
        plot(*sys.argv[2:5])
    elif sys.argv[1] == "decode":
        decode(*sys.argv[2:4])
    else:
        sys.exit(__doc__)
