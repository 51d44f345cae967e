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
    # The command line is an application, so it may bound how long libgomp's idle threads spin
    # (the library does not touch the environment). With the default spin, a machine whose cores
    # are also busy with other work loses them to spinning threads: CifarNet step, 2 threads, two
    # busy processes beside it: 729 ms by default, 261-317 ms with GOMP_SPINCOUNT=10000, 325 ms
    # with OMP_WAIT_POLICY=PASSIVE; on an idle machine 10000 is as fast as the default (147-154 vs
    # 145-154 ms) where PASSIVE is not (160-184 ms). docs/training.md, "Threads". Explicit settings
    # win. libgomp reads them when pyadr._native is first loaded, after this line.
    if "OMP_WAIT_POLICY" not in os.environ:
        os.environ.setdefault("GOMP_SPINCOUNT", "10000")
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
