"""`python -m pyadr bench`: side-by-side timing and error tables of pyadr's convolution.

Measures, in ONE process and ONE run, exact pyadr (on each exact-convolution provider that runs:
builtin, and oneDNN when its library loads), PyTorch's F.conv2d (when importable) and
deep-reuse configurations on real Fashion-MNIST workloads, interleaving the candidates and
reporting medians of the interleaved repeats, then prints

  (a) per layer: fwd / bwd / fwd+bwd ms of every candidate, rc, relative errors of y, dX and dW
      against exact pyadr, speed-ups vs exact pyadr and vs torch, memory held for the backward
      (ctx.nbytes) and the peak-RSS growth of one fwd+bwd;
  (b) error versus rc on real conv2 activations over a grid of L, H, hash ("sign", "l2" with
      several width scales) and order ("hwc", "chw"), to choose defaults from data.

Importing this module has no side effects (no pyadr native load, no torch import, no data read).
The workloads and reuse points are in bench_workloads.py (also what bench/, the pytest-benchmark
suite, uses); the peak-memory probe is pyadr._memory.
"""
from __future__ import annotations

import argparse
import os
import statistics
import sys
import time

import numpy as np

from .._memory import peak_delta_mb
from .bench_workloads import (LAYERS, REUSE_POINTS, data_available, data_dir, import_torch, layer, rel_err,
                              reuse_config, synthetic_layer)

# --------------------------------------------------------------------------------------------
# Candidates
# --------------------------------------------------------------------------------------------
class _Pyadr:
    def __init__(self, label, x, w, b, stride, padding, reuse, provider):
        self.label, self.reuse, self.provider = label, reuse, provider
        self.args = (x, w, b, stride, padding)
        self.ctx = None

    def forward(self):
        import pyadr
        pyadr.set_conv_provider(self.provider)
        x, w, b, s, p = self.args
        y, self.ctx = pyadr.conv2d_forward(x, w, b, s, p, reuse=self.reuse)
        return y

    def backward(self, dy):
        import pyadr
        pyadr.set_conv_provider(self.provider)
        out = pyadr.conv2d_backward(dy, self.ctx)
        return out

    def release(self):
        self.ctx = None


class _Torch:
    def __init__(self, torch, x, w, b, stride, padding):
        self.label, self.reuse, self.ctx = "torch F.conv2d", None, None
        self.torch = torch
        self.x = torch.from_numpy(np.array(x)).requires_grad_(True)
        self.w = torch.from_numpy(np.array(w)).requires_grad_(True)
        self.b = torch.from_numpy(np.array(b)).requires_grad_(True)
        self.s, self.p = stride, padding
        self.y = None
        self._dy = {}

    def forward(self):
        self.y = self.torch.nn.functional.conv2d(self.x, self.w, self.b, self.s, self.p)
        return self.y

    def backward(self, dy):
        key = id(dy)
        if key not in self._dy:
            self._dy = {key: self.torch.from_numpy(dy)}
        g = self.torch.autograd.grad(self.y, (self.x, self.w, self.b), self._dy[key])
        self.y = None
        return g

    def release(self):
        self.y = None


def exact_providers():
    """Providers of the exact convolution to time: the default first, then oneDNN or builtin if both run."""
    import pyadr
    from .. import _onednn
    default = pyadr.get_conv_provider()
    if not _onednn.load():
        return [default]
    return [default, "builtin" if default == "onednn" else "onednn"]


def _to_numpy(a):
    if a is None:
        return None
    if hasattr(a, "detach"):
        return a.detach().numpy()
    return a


# --------------------------------------------------------------------------------------------
# Table formatting
# --------------------------------------------------------------------------------------------
def format_table(headers, rows) -> str:
    cells = [[str(h) for h in headers]] + [[str(c) for c in r] for r in rows]
    widths = [max(len(r[i]) for r in cells) for i in range(len(headers))]
    out = []
    for k, r in enumerate(cells):
        parts = [r[0].ljust(widths[0])] + [c.rjust(wd) for c, wd in zip(r[1:], widths[1:])]
        out.append("  ".join(parts).rstrip())
        if k == 0:
            out.append("  ".join("-" * wd for wd in widths))
    return "\n".join(out)


def _f(v, fmt):
    return "-" if v is None else format(v, fmt)


# --------------------------------------------------------------------------------------------
# (a) timing table of one layer
# --------------------------------------------------------------------------------------------
def time_layer(name, x, w, b, stride, padding, repeats, torch=None, file=sys.stdout):
    """Measures all candidates on one layer, interleaved; prints and returns the rows (dicts)."""
    B, C, H, W = x.shape
    M, _, kh, kw = w.shape
    K = C * kh * kw
    providers = exact_providers()
    default = providers[0]
    cands = [_Pyadr("pyadr exact" if len(providers) == 1 else f"pyadr exact ({prov})", x, w, b, stride, padding,
                    None, prov) for prov in providers]
    if torch is not None:
        cands.append(_Torch(torch, x, w, b, stride, padding))
    notes, seen = [], set()
    for label, kw_ in REUSE_POINTS:
        cfg, clamped = reuse_config(K, **dict(kw_))
        if clamped:
            label = label.replace(f"L={kw_['L']}", f"L={cfg.L}")
        if label in seen:           # clamping made it another point's twin (conv1: L=64 -> 25)
            continue
        if clamped:
            notes.append(f"{label}: L clamped to K={K}")
        seen.add(label)
        cands.append(_Pyadr(label, x, w, b, stride, padding, cfg, default))

    dy = np.random.default_rng(7).standard_normal(
        (B, M) + _out_hw(H, W, kh, kw, stride, padding)).astype(x.dtype)

    # warm-up pass: correctness figures and memory (one fwd+bwd each)
    info = {}
    ref = None
    for c in cands:
        def fb(c=c):
            y = c.forward()
            g = c.backward(dy)
            return y, g, c.ctx
        (y, g, ctx), drss = peak_delta_mb(fb)
        y, dx, dw = _to_numpy(y), _to_numpy(g[0]), _to_numpy(g[1])
        if ref is None:
            ref = (y.copy(), dx.copy(), dw.copy())
        d = {"label": c.label, "peak_mb": drss,
             "err_y": rel_err(y, ref[0]), "err_dx": rel_err(dx, ref[1]), "err_dw": rel_err(dw, ref[2]),
             "rc": None, "ctx_mb": None}
        if isinstance(c, _Pyadr):
            d["ctx_mb"] = ctx.nbytes / 2**20
            if ctx.stats is not None:
                d["rc"] = float(ctx.stats.rc)
            else:
                d["rc"] = 1.0
        info[c.label] = d
        c.release()
        del y, g, ctx, dx, dw

    # timed, interleaved repeats (rotating the order so that no candidate always runs first)
    times = {c.label: ([], [], []) for c in cands}
    for r in range(repeats):
        k = r % len(cands)
        for c in cands[k:] + cands[:k]:
            t0 = time.perf_counter()
            c.forward()
            t1 = time.perf_counter()
            c.backward(dy)
            t2 = time.perf_counter()
            c.release()
            tf, tb, tfb = times[c.label]
            tf.append(t1 - t0)
            tb.append(t2 - t1)
            tfb.append(t2 - t0)

    rows = []
    for c in cands:
        d = info[c.label]
        tf, tb, tfb = (statistics.median(v) * 1e3 for v in times[c.label])
        d.update(fwd_ms=tf, bwd_ms=tb, fb_ms=tfb, exact=c.label.startswith("pyadr exact"))
        rows.append(d)
    ex = rows[0]
    tr = next((r for r in rows if r["label"].startswith("torch")), None)
    for d in rows:
        d["x_exact"] = ex["fb_ms"] / d["fb_ms"]
        d["x_torch"] = tr["fb_ms"] / d["fb_ms"] if tr else None
        d["mem_vs_exact"] = (d["ctx_mb"] / ex["ctx_mb"]) if d["ctx_mb"] is not None and ex["ctx_mb"] else None

    OH, OW = dy.shape[2:]
    N = B * OH * OW
    gflop = 2.0 * N * K * M / 1e9
    print(f"\n== {name}: x {tuple(x.shape)}, w {tuple(w.shape)}, stride {stride}, pad {padding}; "
          f"N={N} K={K} M={M}; {repeats} interleaved repeats, medians ==", file=file)
    headers = ["candidate", "rc", "err(y)", "err(dX)", "err(dW)", "fwd ms", "bwd ms", "fwd+bwd ms",
               "x exact", "x torch", "ctx MB", "mem/exact", "peak dRSS MB"]
    table = []
    for d in rows:
        table.append([d["label"], _f(d["rc"], ".4f"), _f(d["err_y"], ".2e" if d["err_y"] < 1e-3 else ".3f"),
                      _f(d["err_dx"], ".2e" if d["err_dx"] < 1e-3 else ".3f"),
                      _f(d["err_dw"], ".2e" if d["err_dw"] < 1e-3 else ".3f"),
                      _f(d["fwd_ms"], ".1f"), _f(d["bwd_ms"], ".1f"), _f(d["fb_ms"], ".1f"),
                      _f(d["x_exact"], ".2f"), _f(d["x_torch"], ".2f"), _f(d["ctx_mb"], ".1f"),
                      _f(d["mem_vs_exact"], ".2f"), _f(d["peak_mb"], ".1f")])
    print(format_table(headers, table), file=file, flush=True)
    print(f"  exact pyadr: {gflop / (ex['fwd_ms'] / 1e3):.3g} GFLOP/s forward, "
          f"{3 * gflop / (ex['fb_ms'] / 1e3):.3g} GFLOP/s fwd+bwd", file=file)
    for d in (r for r in rows if r["exact"] and tr):
        print(f"  {d['label']} / torch: fwd {d['fwd_ms'] / tr['fwd_ms']:.2f}x, bwd {d['bwd_ms'] / tr['bwd_ms']:.2f}x, "
              f"fwd+bwd {d['fb_ms'] / tr['fb_ms']:.2f}x (>1: pyadr slower)", file=file)
    for n_ in notes:
        print(f"  note: {n_}", file=file)
    return rows


def _out_hw(H, W, kh, kw, stride, padding):
    return ((H + 2 * padding - kh) // stride + 1, (W + 2 * padding - kw) // stride + 1)


# --------------------------------------------------------------------------------------------
# (b) error versus rc grid
# --------------------------------------------------------------------------------------------
# variants: (hash, l2 width_scale or None, orders). "full" is the complete grid; "standard" (default)
# keeps every L and order but H in {8, 15, 24} and the l2 width sweep in "hwc" only; "small" is --quick's.
_ALL_L = (5, 8, 25, 64)
GRIDS = {
    "full": dict(L=_ALL_L, H=(8, 10, 15, 20, 24),
                 variants=(("sign", None, ("hwc", "chw")), ("l2", 0.5, ("hwc", "chw")),
                           ("l2", 1.0, ("hwc", "chw")), ("l2", 2.0, ("hwc", "chw")))),
    "standard": dict(L=_ALL_L, H=(8, 15, 24),
                     variants=(("sign", None, ("hwc", "chw")), ("l2", 0.5, ("hwc",)),
                               ("l2", 1.0, ("hwc", "chw")), ("l2", 2.0, ("hwc",)))),
    "small": dict(L=(8, 25, 64), H=(10, 20),
                  variants=(("sign", None, ("hwc", "chw")), ("l2", 1.0, ("hwc", "chw")))),
}


def grid_size(grid, K, scopes=("batch",)):
    nL = sum(1 for L in grid["L"] if L <= K)
    return nL * len(grid["H"]) * sum(len(v[2]) for v in grid["variants"]) * len(scopes)


def error_grid(name, x, w, b, stride, padding, grid, scopes=("batch",), file=sys.stdout):
    """Prints rc / err(y) for each (hash, width_scale, order, scope, L) row and H column, row by row."""
    import pyadr
    C, kh, kw = w.shape[1:]
    K = C * kh * kw
    y0 = pyadr.conv2d_forward(x, w, b, stride, padding)[0]
    Ls = [L for L in grid["L"] if L <= K]
    skipped = [L for L in grid["L"] if L > K]
    Hs = list(grid["H"])
    results = []
    t0 = time.perf_counter()
    print(f"\n== error vs rc on {name} (x {tuple(x.shape)}, K={K}, He weights; {grid_size(grid, K, scopes)} "
          f"reuse forwards): cell = rc / err(y), err = ||y_reuse - y|| / ||y|| ==", file=file)
    widths = [9, 5, 5, 3] + [11] * len(Hs)
    headers = ["hash", "order", "scope", "L"] + [f"H={H}" for H in Hs]

    def line(cells):
        return "  ".join([cells[0].ljust(widths[0])] + [c.rjust(wd) for c, wd in zip(cells[1:], widths[1:])])

    print(line(headers), file=file)
    print("  ".join("-" * wd for wd in widths), file=file, flush=True)
    for scope in scopes:
        for hash_, ws, orders in grid["variants"]:
            for order in orders:
                for L in Ls:
                    row = [hash_ if ws is None else f"l2 w={ws:g}s", order, scope, str(L)]
                    for H in Hs:
                        kw_ = dict(L=L, H=H, hash=hash_, order=order, scope=scope)
                        if ws is not None:
                            kw_["width_scale"] = ws
                        cfg = pyadr.ReuseConfig(**kw_)
                        y, ctx = pyadr.conv2d_forward(x, w, b, stride, padding, reuse=cfg)
                        rc, e = float(ctx.stats.rc), rel_err(y, y0)
                        del y, ctx
                        results.append(dict(scope=scope, hash=hash_, width_scale=ws, order=order, L=L, H=H,
                                            rc=rc, err=e))
                        row.append(f"{rc:.3f}/{e:.3f}")
                    print(line(row), file=file, flush=True)
    if skipped:
        print(f"  skipped L > K={K}: {skipped}", file=file)
    _print_frontier(results, file)
    print(f"  ({len(results)} reuse forwards in {time.perf_counter() - t0:.1f} s)", file=file)
    return results


def _print_frontier(results, file):
    """Lowest error reached within a few rc budgets: the summary for choosing defaults."""
    budgets = (0.02, 0.05, 0.10, 0.20)
    rows = []
    for bud in budgets:
        ok = [r for r in results if r["rc"] <= bud]
        if not ok:
            rows.append([f"rc <= {bud:g}", "-", "-", "-"])
            continue
        best = min(ok, key=lambda r: r["err"])
        h = best["hash"] if best["width_scale"] is None else f"l2 w={best['width_scale']:g}s"
        rows.append([f"rc <= {bud:g}", f"{h} {best['order']} {best['scope']} L={best['L']} H={best['H']}",
                     f"{best['rc']:.3f}", f"{best['err']:.3f}"])
    print("  best error within an rc budget:", file=file)
    print("\n".join("    " + ln for ln in format_table(["budget", "config", "rc", "err(y)"], rows).splitlines()),
          file=file)


# --------------------------------------------------------------------------------------------
# Command line
# --------------------------------------------------------------------------------------------
def _parser():
    p = argparse.ArgumentParser(
        prog="python -m pyadr bench",
        description="Side-by-side timing (exact pyadr, torch F.conv2d, deep reuse) and error-vs-rc tables "
                    "on real Fashion-MNIST layers. Medians of interleaved repeats, one process.")
    p.add_argument("--threads", type=int, default=2, help="threads for pyadr and torch (default 2)")
    p.add_argument("--layers", default="conv2,conv1,vgg", help="comma list of conv2, conv1, vgg")
    p.add_argument("--repeats", type=int, default=None, help="timed repeats per candidate (default 5; 2 with --quick)")
    p.add_argument("--quick", action="store_true", help="fewer repeats and a smaller error grid (about 1 minute)")
    p.add_argument("--batch", type=int, default=None, help="batch size for every layer (default 128; vgg 64)")
    p.add_argument("--grid", choices=("full", "standard", "small", "none"), default=None,
                   help="error-vs-rc grid on conv2: full = L {5,8,25,64} x H {8,10,15,20,24} x sign/l2 "
                        "(width_scale 0.5,1,2) x hwc/chw; standard (default) = H {8,15,24}, l2 width sweep "
                        "in hwc only; small (--quick) = L {8,25,64} x H {10,20}, sign/l2 w=1")
    p.add_argument("--scopes", default="batch", help="scopes of the error grid: batch, input or batch,input")
    p.add_argument("--no-torch", action="store_true", help="do not compare with PyTorch even if importable")
    p.add_argument("--synthetic", action="store_true", help=argparse.SUPPRESS)  # tiny layers, for tests
    return p


def main(argv=None, file=None) -> int:
    args = _parser().parse_args(argv)
    out = sys.stdout if file is None else file
    import pyadr

    if args.threads < 1:
        print("--threads must be >= 1", file=sys.stderr)
        return 2
    layers = [s.strip() for s in args.layers.split(",") if s.strip()]
    bad = [s for s in layers if s not in LAYERS]
    if bad:
        print(f"unknown layer(s) {bad}; known: {', '.join(LAYERS)}", file=sys.stderr)
        return 2
    scopes = tuple(s.strip() for s in args.scopes.split(",") if s.strip())
    if not scopes or any(s not in ("batch", "input") for s in scopes):
        print(f"--scopes must list batch and/or input, got {args.scopes!r}", file=sys.stderr)
        return 2
    repeats = args.repeats if args.repeats is not None else (2 if args.quick else 5)
    if repeats < 1:
        print("--repeats must be >= 1", file=sys.stderr)
        return 2
    grid_name = args.grid or ("small" if args.quick else "standard")
    if not args.synthetic and not data_available():
        print(f"Fashion-MNIST not found in {data_dir()}: install the Debian package dataset-fashion-mnist "
              f"or set PYADR_FASHION_MNIST", file=sys.stderr)
        return 1

    t_start = time.perf_counter()
    pyadr.set_num_threads(args.threads)
    pyadr.show_config(file=out)
    torch = None
    if args.no_torch:
        print("torch: not used (--no-torch)", file=out)
    else:
        torch, why = import_torch()
        if torch is None:
            print(f"torch: not available ({why}); torch columns are '-'", file=out)
        else:
            torch.set_num_threads(args.threads)
            cap = ""
            try:
                cap = ", CPU capability " + str(torch.backends.cpu.get_cpu_capability())
            except Exception:  # noqa: BLE001 - cosmetic
                pass
            print(f"torch: {torch.__version__}, {torch.get_num_threads()} threads, "
                  f"mkldnn {torch.backends.mkldnn.is_available()}{cap}", file=out)
    print(f"OPENBLAS_CORETYPE={os.environ.get('OPENBLAS_CORETYPE')}  data: "
          f"{'synthetic (test mode)' if args.synthetic else data_dir()}", file=out)
    print("timings: fwd+bwd = one forward then its backward; medians over interleaved repeats; "
          "err = ||z - z_exact|| / ||z_exact|| against exact pyadr with the same dy.", file=out)

    def get(name):
        if args.synthetic:
            return synthetic_layer(name, B=args.batch or 4)
        return layer(name, args.batch)

    for name in layers:
        x, w, b, s, p = get(name)
        time_layer(name, x, w, b, s, p, repeats, torch=torch, file=out)

    if grid_name != "none":
        grid = GRIDS[grid_name]
        x, w, b, s, p = get("conv2")
        error_grid("conv2", x, w, b, s, p, grid, scopes=scopes, file=out)
    print(f"\ntotal {time.perf_counter() - t_start:.1f} s", file=out)
    return 0


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
