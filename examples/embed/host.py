"""A Python host of loopvm through ctypes and NumPy: loads a .lb file, calls
its `main` on two threads at once with NumPy arrays, prints the results.

    python3 examples/embed/host.py target/debug/libloopvm_capi.so examples/embed/decay.lb

ctypes releases the GIL during a foreign call, so the two calls really run
at once; one compiled program is shared by both threads.
"""

import ctypes as C
import sys
import threading

import numpy as np

# Status codes and dtypes, as in capi/include/loopvm.h.
LOOPVM_OK = 0
LOOPVM_TIER_INTERP = 1
DTYPES = {np.dtype(np.bool_): 0, np.dtype(np.int32): 1, np.dtype(np.int64): 2,
          np.dtype(np.float32): 3, np.dtype(np.float64): 4,
          np.dtype(np.uint32): 5, np.dtype(np.uint8): 6}
NUMPY = {v: k for k, v in DTYPES.items()}


class CallOptions(C.Structure):
    _fields_ = [("tier", C.c_int32), ("max_steps", C.c_uint64),
                ("capture_print", C.c_int32), ("trace", C.c_int32),
                ("devices", C.c_uint32), ("mesh_model", C.c_uint32),
                ("shard", C.c_char_p)]


class LoopvmError(Exception):
    def __init__(self, status, message):
        super().__init__(message)
        self.status = status


class Loopvm:
    """The C API through ctypes: handles are opaque c_void_p."""

    def __init__(self, path):
        lib = self.lib = C.CDLL(path)
        P, S, I32, U64 = C.c_void_p, C.c_size_t, C.c_int32, C.c_uint64
        PP = C.POINTER(C.c_void_p)
        sig = {
            "loopvm_version": (C.c_char_p, []),
            "loopvm_status_name": (C.c_char_p, [I32]),
            "loopvm_error_message": (C.c_char_p, [P]),
            "loopvm_error_free": (None, [P]),
            "loopvm_program_load": (I32, [C.c_char_p, PP, PP]),
            "loopvm_program_free": (None, [P]),
            "loopvm_program_function_signature": (C.c_char_p, [P, S]),
            "loopvm_tensor_new": (I32, [I32, S, C.POINTER(S), P, S, PP, PP]),
            "loopvm_tensor_free": (None, [P]),
            "loopvm_tensor_dtype": (I32, [P]),
            "loopvm_tensor_rank": (S, [P]),
            "loopvm_tensor_shape": (C.POINTER(S), [P]),
            "loopvm_tensor_nbytes": (S, [P]),
            "loopvm_tensor_copy_data": (I32, [P, P, S, PP]),
            "loopvm_call_options_default": (CallOptions, []),
            "loopvm_call": (I32, [P, C.c_char_p, PP, S, C.POINTER(CallOptions), PP, PP]),
            "loopvm_result_free": (None, [P]),
            "loopvm_result_count": (S, [P]),
            "loopvm_result_get": (P, [P, S]),
            "loopvm_result_to_string": (C.c_char_p, [P]),
        }
        for name, (res, args) in sig.items():
            f = getattr(lib, name)
            f.restype, f.argtypes = res, args

    def check(self, status, err):
        if status != LOOPVM_OK:
            msg = self.lib.loopvm_error_message(err).decode()
            name = self.lib.loopvm_status_name(status).decode()
            self.lib.loopvm_error_free(err)
            raise LoopvmError(status, f"{name}: {msg}")

    def load(self, path):
        prog, err = C.c_void_p(), C.c_void_p()
        self.check(self.lib.loopvm_program_load(path.encode(), C.byref(prog), C.byref(err)), err)
        return prog

    def tensor(self, array):
        """Copies a NumPy array or scalar in (made C-contiguous first; a
        NumPy scalar or 0-d array is a rank-0 tensor)."""
        a = np.require(np.asarray(array), requirements="C")
        if a.dtype not in DTYPES:
            raise TypeError(f"loopvm has no dtype for {a.dtype}")
        shape = (C.c_size_t * a.ndim)(*a.shape)
        t, err = C.c_void_p(), C.c_void_p()
        st = self.lib.loopvm_tensor_new(DTYPES[a.dtype], a.ndim, shape, a.ctypes.data_as(C.c_void_p), a.nbytes,
                                        C.byref(t), C.byref(err))
        self.check(st, err)
        return t

    def to_numpy(self, t):
        """Copies a tensor out into a new NumPy array."""
        rank = self.lib.loopvm_tensor_rank(t)
        dims = self.lib.loopvm_tensor_shape(t)
        shape = tuple(dims[i] for i in range(rank))
        a = np.empty(shape, dtype=NUMPY[self.lib.loopvm_tensor_dtype(t)])
        err = C.c_void_p()
        self.check(self.lib.loopvm_tensor_copy_data(t, a.ctypes.data_as(C.c_void_p), a.nbytes, C.byref(err)), err)
        return a

    def call(self, prog, name, arrays, tier=LOOPVM_TIER_INTERP):
        """Calls `name` with NumPy arrays; returns (text, [arrays])."""
        tensors = [self.tensor(a) for a in arrays]
        try:
            args = (C.c_void_p * len(tensors))(*[t.value for t in tensors])
            opts = self.lib.loopvm_call_options_default()
            opts.tier = tier
            res, err = C.c_void_p(), C.c_void_p()
            st = self.lib.loopvm_call(prog, name.encode(), args, len(tensors), C.byref(opts), C.byref(res),
                                      C.byref(err))
            self.check(st, err)
            try:
                text = self.lib.loopvm_result_to_string(res).decode()
                n = self.lib.loopvm_result_count(res)
                return text, [self.to_numpy(self.lib.loopvm_result_get(res, i)) for i in range(n)]
            finally:
                self.lib.loopvm_result_free(res)
        finally:
            for t in tensors:
                self.lib.loopvm_tensor_free(t)


def main():
    lib_path = sys.argv[1] if len(sys.argv) > 1 else "target/debug/libloopvm_capi.so"
    prog_path = sys.argv[2] if len(sys.argv) > 2 else "examples/embed/decay.lb"
    lv = Loopvm(lib_path)
    prog = lv.load(prog_path)
    try:
        sig = lv.lib.loopvm_program_function_signature(prog, 0).decode()
        print(f"loopvm {lv.lib.loopvm_version().decode()}: {sig}")
        inputs = [
            (np.arange(1, 7, dtype=np.float32).reshape(2, 3), np.float32(0.5)),
            (np.ones((2, 3), dtype=np.float32), np.float32(2.0)),
        ]
        results = [None] * len(inputs)

        def work(i):
            results[i] = lv.call(prog, "main", inputs[i])

        threads = [threading.Thread(target=work, args=(i,)) for i in range(len(inputs))]
        for t in threads:
            t.start()
        for t in threads:
            t.join()
        for i, r in enumerate(results):
            if r is None:
                print(f"thread {i}: failed", file=sys.stderr)
                return 1
            text, (last, states) = r
            print(f"thread {i}: {text}")
            print(f"thread {i}: last = {last.tolist()} states.shape = {states.shape}")
            # The same recurrence in NumPy.
            xs, decay = inputs[i]
            h = np.zeros(3, dtype=np.float32)
            for x in xs:
                h = h * decay + x
            assert np.allclose(last, h), (last, h)

        try:
            lv.call(prog, "nope", [])
            print("unknown function: no error?")
            return 1
        except LoopvmError as e:
            print(f"unknown function: {e}")
    finally:
        lv.lib.loopvm_program_free(prog)
    return 0


if __name__ == "__main__":
    sys.exit(main())
