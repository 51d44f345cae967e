"""Per-layer online tuning of deep reuse on a small measured frontier (strategy "tuned").

For each reusing layer a frontier of candidates (L, H, hash, which products stay exact) is
measured on a probe batch: the layer's real input x and its real upstream gradient dY, captured
in one training-mode forward + backward of the model (weights, grads, BatchNorm buffers and
engine timers restored afterwards). Per candidate:
  rc                       remaining ratio of the reuse forward,
  err_y, err_dw, err_dx    relative Frobenius errors ||a - a_exact|| / ||a_exact|| of y, dW, dX;
                           `error` = the largest over the products the candidate reuses,
  seconds                  min over `repeats` timed forward + backward (exact timed alike),
  speedup                  exact seconds / seconds; `correction` = speedup / cost model
                           (reuse_schedule.predicted_speedup at the measured rc).
The pick is the fastest candidate with error <= the layer's current budget; a layer whose pick
is not faster than exact by `min_speedup` runs exact. Every `retune_every` steps the current pick
(or, on an exact layer, the last one within budget) and its neighbours (one coordinate moved one
position in the frontier's grid) are measured again; the other candidates keep their last
measurement (their speed is the cost model at their last rc times their last correction), the
pick is redone under the budget of that step, and a pick whose measurement is older than this
step is measured again (and the pick redone) before it runs: rc and error drift as the
weights train (VGG's conv8: error 0.00 at initialisation, 0.28 fifty steps later). The budget moves geometrically from `budget_start`
(coarse) to `budget_end` (fine) over the steps before the exact tail. Every decision is an event
whose reason holds the measured numbers.

Timings are taken with the engine's current threads; `timer(name, label, run) -> seconds`
replaces them (tests inject one, so that picks are deterministic). Data-parallel runs reduce every
measured number over the ranks (their mean), so the ranks decide alike.
"""
from __future__ import annotations

import dataclasses
import math
import time

import numpy as np

from ..nn import functional as F
from .layer_io import capture_layer_io
from .reuse_schedule import EXACT, ReuseSchedule, Rung, predicted_speedup

GRID = ("hash", "L", "H", "exact")     # the frontier's coordinates (neighbours move one of them)


@dataclasses.dataclass(frozen=True)
class Candidate:
    rung: Rung
    exact: tuple = ()                   # ReuseConfig.exact: products computed exactly

    def label(self, K):
        return self.rung.label(K) + ("" if not self.exact else " exact-" + "-".join(self.exact))

    def key(self):
        return (self.rung.hash, self.rung.L, self.rung.H, self.exact)

    def config(self, K, seed):
        return self.rung.config(K, seed, self.exact)


def frontier(layer, l2_H=(8, 12, 16), sign_H=(16, 20, 24), exacts=((), ("dx",))):
    """The candidates of `layer`, coarse first. With C >= 16 input channels dividing K: l2 at
    L in {C, C/2} ({C, C/2, C/4} for C >= 128: wide layers need L < C; L >= 8) x H in l2_H, and sign at L = C with
    H = sign_H[1]. Otherwise sign at the (up to 3) largest divisors of K in [8, 32] (L = min(25, K)
    without one) x H in sign_H. Each with every entry of `exacts` (a layer without input gradient
    has no dX to keep exact)."""
    K, C = layer.K, getattr(layer, "in_channels", None)
    if not getattr(layer, "input_grad", True):
        exacts = ((),)
    shapes = []
    if C is not None and C >= 16 and K % C == 0:
        Ls = [C // d for d in ((1, 2, 4) if C >= 128 else (1, 2)) if C % d == 0 and C // d >= 8]
        shapes = [(L, H, "l2") for L in Ls for H in l2_H] + [(C, sign_H[len(sign_H) // 2], "sign")]
    else:
        Ls = sorted(d for d in range(8, min(32, K) + 1) if K % d == 0)[-3:][::-1] or [min(25, K)]
        shapes = [(L, H, "sign") for L in Ls for H in sign_H]
    return [Candidate(Rung(L, H, h), tuple(e)) for L, H, h in shapes for e in exacts]


def neighbours(cands, index):
    """Indices of the candidates one grid step away from cands[index] (itself included)."""
    axes = {g: sorted({c.key()[i] for c in cands}) for i, g in enumerate(GRID)}
    me = cands[index].key()
    out = []
    for j, c in enumerate(cands):
        diff = [i for i in range(len(GRID)) if c.key()[i] != me[i]]
        if not diff:
            out.append(j)
        elif len(diff) == 1:
            i = diff[0]
            vals = axes[GRID[i]]
            if GRID[i] in ("hash", "exact") or abs(vals.index(c.key()[i]) - vals.index(me[i])) == 1:
                out.append(j)
    return out


def default_timer(repeats):
    def timer(name, label, run):
        best = math.inf
        for _ in range(repeats):
            t0 = time.perf_counter()
            run()
            best = min(best, time.perf_counter() - t0)
        return best
    return timer


def _rel(a, b):
    if a is None or b is None:
        return 0.0
    num = float(((a - b) ** 2).sum()) ** 0.5
    return num / max(float((b * b).sum()) ** 0.5, 1e-30)


def layer_op(layer):
    """(forward(x, reuse) -> (y, ctx), backward(dy, ctx) -> (dx, dw)) of an engine layer, bias-free
    (a bias adds the same to exact and reuse). A layer may provide its own `tuner_op()`."""
    if hasattr(layer, "tuner_op"):
        return layer.tuner_op()
    w = layer.weight.data
    if hasattr(layer, "kernel_size"):
        def fwd(x, reuse):
            return F.conv2d_forward(x, w, None, stride=layer.stride, padding=layer.padding,
                                    dilation=layer.dilation, reuse=reuse)

        def bwd(dy, ctx):
            dx, dw, _ = F.conv2d_backward(dy, ctx, input_grad=layer.input_grad)
            return dx, dw
        return fwd, bwd

    def fwd_fc(x, reuse):
        return F.linear_forward(x, w, None, reuse=reuse)

    def bwd_fc(dy, ctx):
        dx, dw, _ = F.linear_backward(dy, ctx)
        return dx, dw
    return fwd_fc, bwd_fc


def measure(name, layer, cands, x, dy, seed, timer, reduce=None, budget=math.inf, config=None):
    """Measurements of `cands` on `layer` for input x, upstream gradient dy: a list of dicts (rc,
    err_y, err_dw, err_dx, error, seconds, exact_seconds, speedup, predicted, correction). Only
    candidates with error <= `budget` are timed (the others get seconds = speedup = None): a pick
    needs no timing of what the budget excludes, and the budget only shrinks. `config(candidate)`
    gives a candidate's ReuseConfig (default: its seeded one; the schedule's PlaneBank)."""
    fwd, bwd = layer_op(layer)
    K, M = layer.K, getattr(layer, "out_channels", None) or layer.out_features
    reduce = reduce or (lambda v: v)
    y0, ctx0 = fwd(x, None)
    dx0, dw0 = bwd(dy, ctx0)
    out, runs = [], []
    for c in cands:
        cfg = c.config(K, seed) if config is None else config(c)
        y, ctx = fwd(x, cfg)
        dx, dw = bwd(dy, ctx)
        rc, ey, edw, edx = reduce([F.rc_of(ctx), _rel(y, y0), _rel(dw, dw0), _rel(dx, dx0)])
        reused = [e for e, p in zip((ey, edw, edx), ("forward", "dw", "dx")) if p not in c.exact]
        pred = predicted_speedup(M, min(c.rung.L, K), c.rung.H, rc, c.exact)
        out.append({"rc": rc, "err_y": ey, "err_dw": edw, "err_dx": edx, "error": max(reused),
                    "seconds": None, "exact_seconds": None, "speedup": None, "predicted": pred,
                    "correction": None})
        runs.append(lambda cfg=cfg: bwd(dy, fwd(x, cfg)[1]))
    timed = [i for i, m in enumerate(out) if m["error"] <= budget]
    if timed:
        t_exact = reduce([timer(name, EXACT, lambda: bwd(dy, fwd(x, None)[1]))])[0]
        for i in timed:
            m, c = out[i], cands[i]
            seconds = reduce([timer(name, c.label(K), runs[i])])[0]
            speedup = t_exact / max(seconds, 1e-12)
            m.update(seconds=seconds, exact_seconds=t_exact, speedup=speedup,
                     correction=speedup / max(m["predicted"], 1e-12))
    return out


def describe(c, m, K):
    text = (f"{c.label(K)}: rc {m['rc']:.3f}, error {m['error']:.3f} (y {m['err_y']:.3f}, dW "
            f"{m['err_dw']:.3f}, dX {m['err_dx']:.3f})")
    if m["seconds"] is None:
        return text + f", not timed (cost model {m['predicted']:.2f}x)"
    return text + (f", {1e3 * m['seconds']:.1f} ms vs exact {1e3 * m['exact_seconds']:.1f} ms = "
                   f"{m['speedup']:.2f}x (cost model {m['predicted']:.2f}x)")


def pick(cands, meas, budget, min_speedup):
    """(index or None for exact, index of the fastest within budget or None): the fastest
    candidate whose error is within `budget`; None when none is, or it is below min_speedup."""
    best = None
    for i, m in enumerate(meas):
        if m is None or m["error"] > budget or m["speedup"] is None:
            continue
        if best is None or m["speedup"] > meas[best]["speedup"]:
            best = i
    if best is None or meas[best]["speedup"] < min_speedup:
        return None, best
    return best, best


class TunedSchedule(ReuseSchedule):
    """Strategy "tuned": each reusing layer runs its fastest measured candidate within an error
    budget that goes from budget_start to budget_end; re-tuned every `retune_every` steps."""

    def __init__(self, *, budget_start=0.3, budget_end=0.1, retune_every=200, repeats=2,
                 timer=None, candidates=None, **kwargs):
        if kwargs.get("exact_tail") is None:
            kwargs["exact_tail"] = 0.1
        kwargs.pop("exact", None)           # which products stay exact is tuned per layer
        super().__init__("tuned", **kwargs)
        if not (0 < budget_end <= budget_start):
            raise ValueError(f"the error budget must satisfy 0 < budget_end <= budget_start, got "
                             f"{budget_start!r} -> {budget_end!r}")
        for n, v in (("retune_every", retune_every), ("repeats", repeats)):
            if isinstance(v, bool) or not isinstance(v, (int, np.integer)) or v < (0 if n == "retune_every" else 1):
                raise ValueError(f"{n} must be an int >= {0 if n == 'retune_every' else 1}, got {v!r}")
        self.budget_start, self.budget_end = float(budget_start), float(budget_end)
        self.retune_every, self.timer = int(retune_every), timer or default_timer(int(repeats))
        self.candidates_fn = candidates or frontier
        self.tuned = {}     # name -> {"cands": [Candidate], "meas": [dict | None], "best": int | None}
        self.total_steps = 1

    def budget(self, step):
        end = self.tail_start if self.tail_start else self.total_steps
        frac = min(max(step / max(end, 1), 0.0), 1.0)
        return self.budget_start * (self.budget_end / self.budget_start) ** frac

    def setup(self, model, probes, steps_per_epoch, total_steps):
        self._bind(model)
        for layer in self._layers.values():
            layer.reuse = None
        self.plans, self.tuned = {}, {}
        self.total_steps = total_steps
        self.tail_start = total_steps - int(round(self.exact_tail * total_steps))
        names = self.check_layers(model)
        chosen = self.layer_names if self.layer_names is not None else [n for n in names if n.startswith("conv")][1:]
        self._bind_planes(model, chosen, probes, 0)
        for pos, name in enumerate(names):
            if name in chosen:
                cands = self.candidates_fn(self._layers[name])
                self.tuned[name] = {"cands": cands, "meas": [None] * len(cands), "best": None}
                self.plans[name] = {"rungs": [cands[0].rung], "index": 1, "K": self._layers[name].K,
                                    "seed": self.seed * 1009 + pos, "since": 0, "exact": ()}
        return self._tune(0, model, probes, full=True)

    def _tune(self, step, model, probes, full):
        if not self.tuned or not probes:
            return []
        io = capture_layer_io(model, {n: self._layers[n] for n in self.tuned}, probes[0])
        self.plane_bank.at(step)
        self.plane_bank.use_inputs({n: v[0] for n, v in io.items()})
        budget, events = self.budget(step), []
        for name, t in self.tuned.items():
            layer, plan = self._layers[name], self.plans[name]
            current = self._current(name)
            anchor = current if current is not None else t["best"]
            todo = list(range(len(t["cands"]))) if full or anchor is None else neighbours(t["cands"], anchor)
            x, dy = io[name]
            batch = todo
            def config(c, name=name, K=layer.K, seed=plan["seed"]):
                return self._config(name, c.rung, K, seed, c.exact)
            while True:      # a pick measured at an earlier step is measured again before it runs
                fresh = measure(name, layer, [t["cands"][i] for i in batch], x, dy, plan["seed"],
                                self.timer, self._mean_over_ranks, budget, config=config)
                for i, m in zip(batch, fresh):
                    t["meas"][i] = dict(m, step=step)
                choice, t["best"] = pick(t["cands"], t["meas"], budget, self.min_speedup)
                if t["best"] is None or t["meas"][t["best"]]["step"] == step:
                    break
                batch = [t["best"]]
                todo.append(t["best"])
            notes = "; ".join(describe(t["cands"][i], t["meas"][i], layer.K) for i in todo)
            what = "tuned on all" if full or anchor is None else "re-tuned on"
            if choice is None:
                why = (f"no candidate within error budget {budget:.3f}" if t["best"] is None else
                       f"fastest within error budget {budget:.3f} is "
                       f"{t['cands'][t['best']].label(layer.K)} at {t['meas'][t['best']]['speedup']:.2f}x "
                       f"< min speed-up {self.min_speedup:g}x")
            else:
                why = f"fastest within error budget {budget:.3f}"
            events += self._switch(step, name, choice, f"{why}; {what} {len(todo)} candidates: {notes}",
                                   always=full)
        return self._plane_events(step) + events

    def _mean_over_ranks(self, values):
        size = 1 if self.comm is None else self.comm.size
        return [v / size for v in self._reduce(values)]

    def _current(self, name):
        plan = self.plans[name]
        if plan["index"] >= len(plan["rungs"]):
            return None
        key = Candidate(plan["rungs"][0], tuple(plan["exact"])).key()
        return next(i for i, c in enumerate(self.tuned[name]["cands"]) if c.key() == key)

    def _switch(self, step, name, choice, reason, always=False):
        old = self.label(name)
        plan = self.plans[name]
        if choice is None:
            plan["index"] = 1
        else:
            c = self.tuned[name]["cands"][choice]
            plan.update(rungs=[c.rung], index=0, exact=tuple(c.exact))
        self._apply(name)
        if self.label(name) == old and not always:
            return []
        plan["since"] = step
        return [self._event(step, name, old, self.label(name), reason)]

    def label(self, name):
        plan = self.plans.get(name)
        if plan is None or plan["index"] >= len(plan["rungs"]):
            return EXACT
        return self.plane_bank.label(Candidate(plan["rungs"][0], tuple(plan.get("exact", ()))).label(plan["K"]))

    def _apply(self, name):
        plan, layer = self.plans[name], self._layers[name]
        if plan["index"] >= len(plan["rungs"]):
            layer.reuse = None
        else:
            layer.reuse = self._config(name, plan["rungs"][0], plan["K"], plan["seed"], tuple(plan.get("exact", ())))

    def after_step(self, step, loss, model, probes):
        nxt = step + 1
        if probes:
            self.plane_bank.probe = probes[0]
        if not self.retune_every or nxt % self.retune_every or nxt >= (self.tail_start or 0):
            return []
        return self._tune(nxt, model, probes, full=False)

    def resolved(self):
        out = super().resolved()
        out["frontier"] = {n: [c.label(self.plans[n]["K"]) for c in t["cands"]] for n, t in self.tuned.items()}
        out["budget"] = [self.budget_start, self.budget_end]
        return out

    def state_dict(self):
        state = super().state_dict()
        for n, p in self.plans.items():
            state["plans"][n]["exact"] = list(p["exact"])
        state["tuned"] = {n: {"meas": t["meas"], "best": t["best"]} for n, t in self.tuned.items()}
        state["total_steps"] = self.total_steps
        return state

    def load_state_dict(self, state, model, probes=None):
        super().load_state_dict(state, model, probes)
        self.total_steps = int(state.get("total_steps", 1))
        self.tuned = {}
        for n, p in self.plans.items():
            p["exact"] = tuple(state["plans"][n].get("exact", ()))
            cands = self.candidates_fn(self._layers[n])
            saved = state.get("tuned", {}).get(n, {})
            meas = saved.get("meas") or [None] * len(cands)
            self.tuned[n] = {"cands": cands, "meas": meas if len(meas) == len(cands) else [None] * len(cands),
                             "best": saved.get("best")}
        self._apply_all()


def schedule_class(strategy):
    """The schedule class of a strategy name (TunedSchedule for "tuned")."""
    return TunedSchedule if strategy == "tuned" else ReuseSchedule
