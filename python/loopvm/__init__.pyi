import os
from typing import Any, Dict, List, Optional, Sequence, Tuple, Union

import numpy as np

from ._support import CompileError as CompileError
from ._support import DiffResult as DiffResult
from ._support import Error as Error
from ._support import LimitError as LimitError
from ._support import Param as Param
from ._support import RunError as RunError
from ._support import Signature as Signature
from ._support import TensorType as TensorType

__version__: str

ArrayLike = Any  # NumPy arrays, Python scalars and nested lists, objects with __array__ or __dlpack__
Result = Union[np.ndarray, Tuple["Result", ...]]

class Program:
    """A compiled, verified loopvm program (thread-safe)."""

    @property
    def signature(self) -> Signature: ...
    @property
    def functions(self) -> List[str]: ...
    def run(
        self,
        *args: ArrayLike,
        tier: str = "auto",
        max_steps: Optional[int] = None,
        max_memory: Optional[int] = None,
        timeout: Optional[float] = None,
        trace: bool = False,
        stats: bool = False,
        **kwargs: ArrayLike,
    ) -> Any:
        """Runs ``main``; returns arrays / tuples, or ``(result, stats)`` with ``stats=True``."""
        ...
    def diff(self, *args: ArrayLike, tiers: Optional[Sequence[str]] = None, **kwargs: ArrayLike) -> DiffResult: ...
    def emit(self, *args: ArrayLike, unroll: bool = False, **kwargs: ArrayLike) -> str: ...
    def dis(self) -> str: ...
    def to_bytecode(self) -> bytes: ...

def compile(source: str, file: str = "<string>") -> Program: ...
def load(path: Union[str, "os.PathLike[str]"]) -> Program: ...
def plugins() -> List[Dict[str, Any]]: ...
def format(value: Result) -> str: ...
