"""``python -m loopvm``: the ``loopvm`` command line's run, check, compile,
dis, emit, diff and plugin list, through the Python package."""

from __future__ import annotations

import argparse
import sys

import loopvm


def _bytes(s: str) -> int:
    mul = {"k": 1 << 10, "m": 1 << 20, "g": 1 << 30}.get(s[-1:].lower(), 1)
    return int(s[:-1] if mul > 1 else s) * mul


def _seconds(s: str) -> float:
    s = s.strip()
    if s.endswith("ms"):
        return float(s[:-2]) / 1e3
    if s.endswith("s"):
        return float(s[:-1])
    return float(s)


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(prog="python -m loopvm", description="Run tensor loop programs (as the loopvm CLI).")
    sub = ap.add_subparsers(dest="cmd", required=True)
    r = sub.add_parser("run", help="run a program's main")
    r.add_argument("file")
    r.add_argument("--tier", default="auto")
    r.add_argument("--arg", action="append", default=[], metavar="NAME=VALUE")
    r.add_argument("--out", help="write the result (a tensor) as .npy")
    r.add_argument("--format", default="text", choices=["text", "json"])
    r.add_argument("--trace", action="store_true")
    r.add_argument("--stats", action="store_true")
    r.add_argument("--max-steps", type=int)
    r.add_argument("--max-memory", type=_bytes)
    r.add_argument("--timeout", type=_seconds)
    for name in ["check", "dis", "emit"]:
        sub.add_parser(name).add_argument("file")
    c = sub.add_parser("compile")
    c.add_argument("file")
    c.add_argument("-o", "--output", required=True)
    d = sub.add_parser("diff")
    d.add_argument("file")
    d.add_argument("--arg", action="append", default=[])
    p = sub.add_parser("plugin")
    p.add_argument("what", choices=["list"])
    a = ap.parse_args(argv)
    try:
        if a.cmd == "plugin":
            found = loopvm.plugins()
            if not found:
                print("no PJRT plugin found.")
            for pl in found:
                print(f"{pl['path']} ({pl['kind'] or '?'}, from {pl['source']})")
                if pl["status"] == "ok":
                    print(f"  platform {pl['platform']} {pl['platform_version']}, PJRT API {pl['api_version']}")
                    print(f"  {len(pl['devices'])} device(s): {', '.join(pl['devices'])}")
                else:
                    print(f"  {pl['status']}: {pl['error']}")
            return 0
        prog = loopvm.load(a.file)
        if a.cmd == "check":
            print(f"{a.file}: ok")
        elif a.cmd == "dis":
            sys.stdout.write(prog.dis())
        elif a.cmd == "emit":
            sys.stdout.write(prog.emit())
        elif a.cmd == "compile":
            with open(a.output, "wb") as f:
                f.write(prog.to_bytecode())
        elif a.cmd == "diff":
            res = prog.diff(*prog._cli_args(a.arg))
            print(res)
            if not res.ok:
                return 1
        else:
            value, text, js, stats = prog._run_cli(
                a.arg, tier=a.tier, max_steps=a.max_steps, max_memory=a.max_memory, timeout=a.timeout, trace=a.trace
            )
            if a.out:
                import numpy as np

                np.save(a.out, value)
            if a.format == "json":
                print(js)
            elif not a.out:
                print(text)
            if a.stats:
                print(f"ops executed:     {stats['ops']}", file=sys.stderr)
                print(f"loop iterations:  {stats['loop_iterations']}", file=sys.stderr)
                for l in stats["loops"]:
                    print(f"  {l['kind']} in `{l['func']}` (body b{l['body']}): {l['entries']} entries, "
                          f"{l['iterations']} iterations in the interpreter", file=sys.stderr)
                for n in stats["notes"]:
                    print(n, file=sys.stderr)
                print(f"time:             {stats['elapsed'] * 1e3:.3f} ms", file=sys.stderr)
        return 0
    except loopvm.CompileError as e:
        sys.stderr.write(e.render())
        return 1
    except (loopvm.Error, ValueError, TypeError, OSError) as e:
        print(f"error: {e}", file=sys.stderr)
        return 1


if __name__ == "__main__":
    sys.exit(main())
