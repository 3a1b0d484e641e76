"""Writes the batch of rnn_dp.lb: xs f32[32, 256, 2], ys f32[32, 256] (seeded)."""
import sys
import numpy as np

rng = np.random.default_rng(20)
xs = rng.standard_normal((32, 256, 2)).astype(np.float32)
ys = (0.8 * xs[:, :, 0] - 0.5 * np.roll(xs[:, :, 1], 1, axis=0)).astype(np.float32)
np.save(sys.argv[1] + "/xs.npy", xs)
np.save(sys.argv[1] + "/ys.npy", ys)
