"""Command line: `pyadr <command>` or `python -m pyadr <command>`.

  train / compare / summary / plot / evaluate
                                      the standalone trainer (pyadr.train)
  bench                               kernel benchmark tables on real Fashion-MNIST activations
  profile                             where a training step's time goes (exact vs reuse)
  export                              trainer checkpoint -> binary weights for the edge build
  config                              show_config(): GEMM, OpenMP threads, SIMD, GPU
"""
from __future__ import annotations

import importlib
import os
import sys

_COMMANDS = {
    "train": ("pyadr.cli.train", "main", True),
    "compare": ("pyadr.cli.train", "main", True),
    "summary": ("pyadr.cli.train", "main", True),
    "plot": ("pyadr.cli.train", "main", True),
    "evaluate": ("pyadr.cli.train", "main", True),
    "bench": ("pyadr.cli.bench", "main", False),
    "profile": ("pyadr.cli.profile", "main", False),
    "export": ("pyadr.cli.export", "main", False),
}


def _usage(out):
    print(__doc__.strip(), file=out)


def main(argv=None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    if not argv or argv[0] in ("-h", "--help"):
        _usage(sys.stdout if argv else sys.stderr)
        return 0 if argv else 2
    cmd, rest = argv[0], argv[1:]
    # The command line is an application, so it may choose the process's OpenMP wait policy (the
    # library does not): the core's OpenMP regions alternate with NumPy's OpenBLAS threads, and
    # OpenMP threads still spinning after a region take the cores from OpenBLAS (CifarNet step,
    # 2 threads: linear 286 -> 12 ms, step 717 -> 261 ms; docs/training.md, "Threads"). An explicit
    # OMP_WAIT_POLICY wins. libgomp reads it when pyadr._native is first loaded, after this line.
    os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")
    if cmd == "config":
        import pyadr
        pyadr.show_config()
        return 0
    if cmd not in _COMMANDS:
        print(f"pyadr: unknown command {cmd!r}; choose from config, {', '.join(_COMMANDS)}", file=sys.stderr)
        return 2
    module, func, pass_cmd = _COMMANDS[cmd]
    try:
        mod = importlib.import_module(module)
    except ModuleNotFoundError as exc:
        if exc.name != module:
            raise
        print(f"pyadr: command {cmd!r} is not available in this build", file=sys.stderr)
        return 2
    return int(getattr(mod, func)(([cmd] if pass_cmd else []) + rest) or 0)


if __name__ == "__main__":
    sys.exit(main())
