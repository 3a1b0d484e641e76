"""Exceptions and signature types of loopvm (pure Python; the native
extension ``loopvm._native`` raises and builds these)."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Optional, Tuple, Union


class Error(Exception):
    """Base class of loopvm's own exceptions."""


class CompileError(Error):
    """The source did not parse or type-check (or bytecode was malformed).

    ``str(e)`` is ``file:line:col: message``; ``e.render()`` is the full
    report with the source line and carets, as ``loopvm check`` prints it.
    """

    def __init__(self, message: str, file: Optional[str], line: Optional[int], col: Optional[int], rendered: str):
        super().__init__(message, file, line, col, rendered)
        self.message = message
        self.file = file
        self.line = line
        self.col = col
        self._rendered = rendered

    def __str__(self) -> str:
        if self.file is not None and self.line is not None:
            return f"{self.file}:{self.line}:{self.col}: {self.message}"
        return self.message

    def render(self) -> str:
        """The full diagnostic: ``error: ...``, the place, the source line, carets."""
        return self._rendered


class RunError(Error):
    """The program failed while running (a kernel error, out of memory, a
    tier that cannot run it)."""

    def __init__(self, message: str):
        super().__init__(message)
        self.message = message


class LimitError(RunError):
    """The run hit ``max_steps``, ``timeout`` or ``max_memory``."""


@dataclass(frozen=True)
class TensorType:
    """A tensor type: ``dtype`` (``"f32"``...) and ``shape``, whose entries
    are ints or shape-variable names."""

    dtype: str
    shape: Tuple[Union[int, str], ...]

    def __str__(self) -> str:
        if not self.shape:
            return self.dtype
        return f"{self.dtype}[{', '.join(str(d) for d in self.shape)}]"


Type = Union[TensorType, Tuple["Type", ...]]


def _show(t: Type) -> str:
    if isinstance(t, tuple):
        inner = [_show(x) for x in t]
        return f"({inner[0]},)" if len(inner) == 1 else f"({', '.join(inner)})"
    return str(t)


@dataclass(frozen=True)
class Param:
    """A parameter: its ``name`` and ``type``."""

    name: str
    type: Type

    def __str__(self) -> str:
        return f"{self.name}: {_show(self.type)}"


@dataclass(frozen=True)
class Signature:
    """A function's signature: ``name``, ``params`` and ``result``."""

    name: str
    params: Tuple[Param, ...]
    result: Type

    @property
    def names(self) -> Tuple[str, ...]:
        return tuple(p.name for p in self.params)

    def __getitem__(self, name: str) -> Type:
        for p in self.params:
            if p.name == name:
                return p.type
        raise KeyError(name)

    def __str__(self) -> str:
        return f"fn {self.name}({', '.join(str(p) for p in self.params)}) -> {_show(self.result)}"


class DiffResult(dict):
    """``Program.diff``'s result: tier name -> ``{"result", "text", "time",
    "agrees", "mismatch", "error", "reference", "not_run"}``. ``str`` is the
    table ``loopvm diff`` prints; ``ok`` is true when no tier disagrees."""

    @property
    def ok(self) -> bool:
        return all(r["agrees"] or r["reference"] or r["not_run"] for r in self.values())

    def __str__(self) -> str:
        lines = [f"{'tier':<8} {'time':>12}  result"]
        for tier, r in self.items():
            if r["reference"]:
                what = f"{r['text']} (reference)"
            elif r["error"] is not None:
                what = ("not run: " if r["not_run"] else "FAILED: ") + r["error"]
            elif r["mismatch"] is not None:
                what = f"MISMATCH: {r['mismatch']}"
            else:
                what = "agrees"
            lines.append(f"{tier:<8} {r['time'] * 1e3:>9.3f} ms  {what}")
        return "\n".join(lines)
