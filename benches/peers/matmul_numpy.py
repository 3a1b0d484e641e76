"""NumPy's side of the batched matmul figure (issue 14): `np.matmul` of two
f32 `[8, 64, 64]` arrays with the values of `benches/interp.rs`'s
`batched_matmul_8x64x64_flops` (the same formula), in GFLOP/s (2 per
multiply-add), best of 5 rounds of timed loops. Run it next to the
criterion bench, in the same session:

  benches/peers/.venv/bin/python benches/peers/matmul_numpy.py
  cargo bench --bench interp -- batched_matmul

Prints one line: NumPy's version, its BLAS, the threads it may use, and the
best GFLOP/s single-threaded (OPENBLAS/OMP/MKL threads set to 1 before
importing NumPy, as loopvm's interpreter runs one GEMM per batch on one
thread) and with the BLAS's default threads (a second process).
"""

import json
import os
import subprocess
import sys
import time

NB, N = 8, 64


def measure():
    import numpy as np

    i = np.arange(NB * N * N, dtype=np.int64)
    a = ((((i * 7919) % 1000) / 1000.0 - 0.5) * 0.1).astype(np.float32).reshape(NB, N, N)
    b = ((((i * 104729) % 1000) / 1000.0 - 0.5) * 0.1).astype(np.float32).reshape(NB, N, N)
    flops = 2 * NB * N * N * N
    np.matmul(a, b)
    best = float("inf")
    for _ in range(5):
        reps = 2000
        t0 = time.perf_counter()
        for _ in range(reps):
            np.matmul(a, b)
        best = min(best, (time.perf_counter() - t0) / reps)
    return {"numpy": np.__version__, "seconds": best, "gflops": flops / best / 1e9}


if __name__ == "__main__":
    if len(sys.argv) > 1 and sys.argv[1] == "--child":
        print(json.dumps(measure()))
        sys.exit(0)
    out = {}
    for label, env in [("1 thread", {"OPENBLAS_NUM_THREADS": "1", "OMP_NUM_THREADS": "1", "MKL_NUM_THREADS": "1"}), ("default threads", {})]:
        r = subprocess.run([sys.executable, __file__, "--child"], env={**os.environ, **env}, capture_output=True, text=True, check=True)
        out[label] = json.loads(r.stdout)
    print(json.dumps({"shape": [NB, N, N], "cpus": os.cpu_count(), **out}))
