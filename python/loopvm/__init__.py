"""loopvm: tensor loop programs (``fori_loop``, ``while_loop``, ``scan``)
compiled as loops, run on an interpreter, a Cranelift JIT or XLA.

    >>> import numpy as np, loopvm
    >>> prog = loopvm.compile("fn main(x: f32[N]) -> f32 { sum(x * x) }")
    >>> prog.run(np.arange(3, dtype=np.float32))
    array(5., dtype=float32)

``compile`` / ``load`` give a ``Program``; ``Program.run`` runs it
(``tier="interp" | "jit" | "xla" | "auto"``). Errors are ``CompileError``,
``RunError`` and ``LimitError``, and ``TypeError`` / ``ValueError`` for
arguments that do not fit. See docs/python.md.
"""

from ._native import Program, compile, format, load, plugins
from ._support import (
    CompileError,
    DiffResult,
    Error,
    LimitError,
    Param,
    RunError,
    Signature,
    TensorType,
)

__version__ = "0.1.0"

__all__ = [
    "Program",
    "compile",
    "load",
    "plugins",
    "format",
    "Error",
    "CompileError",
    "RunError",
    "LimitError",
    "Signature",
    "Param",
    "TensorType",
    "DiffResult",
]
