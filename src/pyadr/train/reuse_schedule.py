"""Which layers use deep reuse, with which (L, H, hash), and when that changes.

Strategies
- exact:    no reuse.
- fixed:    one rung (L, H, hash) on every reusing layer for the whole run (optionally an exact tail).
- ladder:   all reusing layers climb the same rungs at fixed epoch milestones, then exact.
- adaptive: each layer has its own ladder of rungs from coarse to fine; all layers advance one rung
            when the training loss plateaus (the mean of the last `plateau_window` losses improved
            on the window before by less than `plateau_eps`, relatively, and each has been on its rung
            for at least `min_dwell` of the steps: mini-batch noise must not skip the rungs), and a
            layer advances when
            a periodic check on a few training batches shows that reuse in that layer alone raises
            the loss above exact by more than `gap_delta` (relatively). The last `exact_tail`
            fraction of the steps is exact. Every change is reported with its reason.

Default layers: every convolution except the first (reuse there costs accuracy for little work),
kept only if the cost model predicts a gain. Cost model (DESIGN.md): speed-up of a layer with M
output channels ~= M / (H + rc*M + M/L), rc measured on a probe batch at the start of training.
Default rungs follow the measured anchors: starting coarse does damage a short budget cannot
repair, while a ladder from fine (rc ~0.1, then ~0.2, exact for the last quarter) on CifarNet's
conv2 kept accuracy (89.35 % vs 89.70 % exact). For a convolution with C >= 16 input channels the
rungs are "l2" with L = C (each sub-vector is one input pixel's channels, hashed once per pixel by
the engine): H = 12 then 16, and 20 for wide layers (conv2 of CifarNet on Fashion-MNIST: rc 0.23
then 0.32 with new weights, 0.40 then 0.46 with trained ones; H = 12 has output error 0.17 where
H = 8 has 0.27, `pyadr bench`), since l2 needs far fewer hash bits than sign for the same rc and
error. Other layers keep sign rungs at L = min(25, K).

Hash planes: `planes` = "random" (the rungs' seeded planes, the default) or "pca" / "pca-centred"
(the principal directions of each layer's sub-vectors on the first probe batch, refitted every
`planes_every` steps; pyadr.train.data_planes). Every config the schedule runs or measures comes
from its PlaneBank; a data-aware rung's label ends in " pca" (" pca-c").

Data-parallel runs: set `schedule.comm` (pyadr.train.distributed). Each rank then holds its
slice of the probe batches; rc and probe losses are measured on the slices and reduced over the
ranks, and the training loss given to after_step is the global batch's, so every rank takes the
same decision at the same step from the same numbers.
"""
from __future__ import annotations

import dataclasses
import json
import math
import zlib

import numpy as np

from ..nn.loss import cross_entropy_loss
from .data_planes import PlaneBank
from .layer_io import engine_layers

STRATEGIES = ("exact", "fixed", "ladder", "adaptive", "tuned")
EXACT = "exact"


@dataclasses.dataclass(frozen=True)
class Rung:
    L: int
    H: int
    hash: str = "sign"
    width_scale: float = 1.0

    def __post_init__(self):
        if isinstance(self.L, bool) or not isinstance(self.L, (int, np.integer)) or self.L < 1:
            raise ValueError(f"rung L must be an int >= 1, got {self.L!r}")
        if isinstance(self.H, bool) or not isinstance(self.H, (int, np.integer)) or not 1 <= self.H <= 64:
            raise ValueError(f"rung H must be an int in [1, 64], got {self.H!r}")
        if self.hash not in ("sign", "l2"):
            raise ValueError(f"rung hash must be 'sign' or 'l2', got {self.hash!r}")
        if not (isinstance(self.width_scale, (int, float)) and self.width_scale > 0):
            raise ValueError(f"rung width_scale must be > 0, got {self.width_scale!r}")

    def config(self, K, seed, exact=()):
        import pyadr
        return pyadr.ReuseConfig(L=min(int(self.L), K), H=int(self.H), hash=self.hash,
                           width_scale=float(self.width_scale), seed=int(seed), exact=exact)

    def label(self, K=None):
        L = self.L if K is None else min(self.L, K)
        extra = f" w{self.width_scale:g}" if self.hash == "l2" else ""
        return f"{self.hash} L{L} H{self.H}{extra}"

    def to_dict(self):
        return dataclasses.asdict(self)

    @classmethod
    def from_dict(cls, d):
        if not isinstance(d, dict):
            raise ValueError(f"a rung must be a mapping with L, H (and hash, width_scale), got {d!r}")
        unknown = set(d) - {"L", "H", "hash", "width_scale"}
        if unknown:
            raise ValueError(f"unknown rung keys {sorted(unknown)}")
        return cls(**d)


def predicted_speedup(M, L, H, rc, exact=()):
    """Cost-model speed-up bound of a reuse layer (DESIGN.md): M / (H + rc*M + M/L) for each of
    its three products (forward, dW, dX) that reuses, 1 for each in `exact` (ReuseConfig.exact);
    the layer's: 3 / (sum of the three relative costs)."""
    reused = (H + rc * M + M / L) / M
    return 3.0 / sum(1.0 if p in exact else reused for p in ("forward", "dw", "dx"))


def default_rungs(K, M, C=None):
    """Coarse-to-fine rungs. With C >= 16 input channels dividing K: l2 (width 1 sigma) at L = C,
    H = 12, 16, and 20 for wide layers (M >= 128, where hash bits cost relatively less). Otherwise
    sign at L = min(25, K): H = 20, 24, and 28, 32 for wide layers.

    Why H = 12 first: on CifarNet/Fashion-MNIST (2 epochs, seed 0) fixed l2 L=64 on conv2 gave
    86.37 % with H = 8 (rc 0.2 during training) and 88.70 % with H = 12 (rc 0.35) against 88.82 %
    exact; a run that started at H = 8 did not recover (87.76 %). Rungs that the cost model says
    would not pay (min_speedup) are dropped when the schedule starts, and skipped when a layer
    advances if the rc measured then says they no longer pay."""
    wide = M >= 128
    if C is not None and C >= 16 and K % C == 0:
        return [Rung(int(C), h, "l2") for h in [12, 16] + ([20] if wide else [])]
    L = min(25, K)
    hs = [20, 24] + ([28, 32] if wide else [])
    return [Rung(L, h) for h in hs]


def _out_width(layer):
    return getattr(layer, "out_channels", None) or layer.out_features


class ReuseSchedule:
    def __init__(self, strategy="exact", *, rungs=None, ladder=None, layers=None, exact_tail=None,
                 plateau_window=50, plateau_eps=0.01, gap_delta=0.1, check_every=200,
                 probe_batches=2, min_speedup=1.2, min_dwell=0.25, seed=0, exact=(), planes="random",
                 planes_every=0):
        if strategy not in STRATEGIES:
            raise ValueError(f"reuse strategy must be one of {', '.join(STRATEGIES)}; got {strategy!r}")
        self.strategy = strategy
        self.rungs = [r if isinstance(r, Rung) else Rung.from_dict(r) for r in rungs] if rungs else None
        self.ladder = ladder            # [(epoch, Rung | None)], ladder strategy only
        self.layer_names = list(layers) if layers is not None else None
        if exact_tail is None:
            exact_tail = 0.25 if strategy == "adaptive" else 0.0
        if not 0.0 <= exact_tail <= 1.0:
            raise ValueError(f"exact_tail must be in [0, 1], got {exact_tail}")
        for name, v, lo in (("plateau_window", plateau_window, 1), ("check_every", check_every, 0),
                            ("probe_batches", probe_batches, 1)):
            if isinstance(v, bool) or not isinstance(v, (int, np.integer)) or v < lo:
                raise ValueError(f"{name} must be an int >= {lo}, got {v!r}")
        self.exact_tail, self.plateau_window, self.plateau_eps = float(exact_tail), int(plateau_window), float(plateau_eps)
        self.gap_delta, self.check_every, self.probe_batches = float(gap_delta), int(check_every), int(probe_batches)
        if not (isinstance(min_dwell, (int, float)) and 0.0 <= min_dwell <= 1.0):
            raise ValueError(f"min_dwell must be in [0, 1], got {min_dwell!r}")
        self.min_speedup, self.seed, self.min_dwell = float(min_speedup), int(seed), float(min_dwell)
        self.exact = tuple(exact)       # ReuseConfig.exact of every reusing layer (e.g. ("dx",))
        self.min_dwell_steps = 0
        self.plans = {}                 # name -> {"rungs": [Rung], "index": int, "K": int, "seed": int}
        self.recent_losses = []
        self.tail_start = None
        self.milestones = []            # ladder: [(step, rung index)]
        self._layers = {}
        self.comm = None                # distributed: probe measurements are reduced over ranks
        self.plane_bank = PlaneBank(planes, planes_every)   # every config the schedule builds

    def _reduce(self, values):
        """Sums of `values` over the ranks (the values themselves in a 1-process run)."""
        if self.comm is None or self.comm.size == 1:
            return [float(v) for v in values]
        return self.comm.allgather(values).sum(axis=0).tolist()

    # -- setup --------------------------------------------------------------------------------
    def setup(self, model, probes, steps_per_epoch, total_steps):
        """Choose the reusing layers and their rungs (measuring rc on `probes`); returns events."""
        self._bind(model)
        for layer in self._layers.values():      # the schedule owns every layer's reuse setting
            layer.reuse = None
        self.plans = {}
        self.tail_start = total_steps - int(round(self.exact_tail * total_steps))
        self.min_dwell_steps = int(round(self.min_dwell * total_steps))
        if self.strategy == "exact":
            return []
        if self.strategy == "tuned":
            raise ValueError("the tuned strategy is pyadr.train.layer_tuner.TunedSchedule")
        names = self.check_layers(model)
        if self.layer_names is not None:
            candidates = list(self.layer_names)
        else:
            convs = [n for n in names if n.startswith("conv")]
            candidates = convs[1:]
        base = self._base_rungs()
        self._bind_planes(model, candidates, probes, 0)
        if self.strategy == "ladder":
            self.milestones = self._ladder_milestones(steps_per_epoch)
        first_index = self._ladder_target(0) if self.strategy == "ladder" else 0
        events = []
        for pos, name in enumerate(names):
            if name not in candidates:
                continue
            layer = self._layers[name]
            rungs = base if base is not None else default_rungs(layer.K, _out_width(layer), getattr(layer, "in_channels", None))
            seed = self.seed * 1009 + pos
            kept, notes = [], []
            for rung in rungs:
                rc, gain = self._rung_gain(model, name, rung, seed, probes)
                notes.append(f"{rung.label(layer.K)}: rc {rc:.3f}, predicted speed-up {gain:.2f}x")
                if gain >= self.min_speedup or self.layer_names is not None:
                    kept.append(rung)
            if self.strategy in ("fixed", "ladder") and kept and len(kept) != len(rungs) \
                    and self.layer_names is None:
                kept = []                # these strategies need every rung on every layer
            if not kept:
                events.append(self._event(0, name, EXACT, EXACT, "cost model predicts no gain ("
                                          + "; ".join(notes) + ")"))
                continue
            self.plans[name] = {"rungs": kept, "index": min(first_index, len(kept)), "K": layer.K,
                                "seed": seed, "since": 0}
            events.append(self._event(0, name, EXACT, self.label(name), "start (" + "; ".join(notes) + ")"))
        self._apply_all()
        return self._plane_events(0) + events

    def check_layers(self, model):
        """Raise ValueError when a named reuse layer is not in `model`; returns the model's
        engine layer names (a run checks this before it writes any file)."""
        names = [n for n, _ in engine_layers(model)]
        unknown = [n for n in self.layer_names or [] if n not in names]
        if unknown:
            raise ValueError(f"reuse layers {unknown} are not in the model (it has {', '.join(names)})")
        return names

    def resolved(self):
        """What the schedule runs, per reusing layer: its rungs (coarse to fine, L as used,
        i.e. at most K) and their labels; and the exact tail (config.json records this)."""
        rungs = {n: [dict(r.to_dict(), L=min(int(r.L), p["K"])) for r in p["rungs"]]
                 for n, p in self.plans.items()}
        labels = {n: [r.label(p["K"]) for r in p["rungs"]] for n, p in self.plans.items()}
        return {"strategy": self.strategy, "reuse_layers": list(self.plans), "rungs": rungs,
                "rung_labels": labels, "exact_tail": self.exact_tail,
                "planes": {"kind": self.plane_bank.kind, "every": self.plane_bank.every}}

    def _base_rungs(self):
        if self.strategy == "fixed":
            if not self.rungs:
                raise ValueError("the fixed strategy needs one rung (--L, --H, --hash)")
            return self.rungs[:1]
        if self.strategy == "ladder":
            return [r for _, r in self.ladder if r is not None] if self.ladder else (self.rungs or None)
        return self.rungs

    def _ladder_milestones(self, steps_per_epoch):
        """[(step, rung index)] from (epoch, rung) pairs; an exact entry ends the ladder."""
        out, idx = [], 0
        entries = self.ladder or [(0.0, r) for r in (self.rungs or [])[:1]]
        for epoch, rung in entries:
            step = int(round(float(epoch) * steps_per_epoch))
            out.append((step, idx if rung is not None else None))
            if rung is not None:
                idx += 1
        return out

    def _ladder_target(self, step):
        """Rung index the ladder prescribes at `step` (exact before the first milestone)."""
        target = 10 ** 9
        for ms_step, idx in self.milestones:
            if step >= ms_step:
                target = 10 ** 9 if idx is None else idx
        return target

    def _rung_gain(self, model, name, rung, seed, probes):
        """(rc of `rung` on layer `name`, measured on the first probe batch; cost-model speed-up)."""
        layer = self._layers[name]
        rc = self._measure_rc(model, layer, self._config(name, rung, layer.K, seed, self.exact), probes[:1])
        return rc, predicted_speedup(_out_width(layer), min(rung.L, layer.K), rung.H, rc, self.exact)

    def _measure_rc(self, model, layer, config, probes):
        saved = [(l, l.reuse) for _, l in engine_layers(model)]
        was_training = model.training
        try:
            for l, _ in saved:
                l.reuse = None
            layer.reuse = config
            model.eval()
            rcs = []
            for x, _ in probes:
                if len(x):
                    model.forward(x)
                    rcs.append(layer.last_rc if layer.last_rc is not None else 1.0)
            total, count = self._reduce([sum(rcs), len(rcs)])
            return total / max(count, 1)
        finally:
            for l, r in saved:
                l.reuse = r
            model.train(was_training)

    def _bind(self, model):
        self._layers = dict(engine_layers(model))

    # -- hash planes --------------------------------------------------------------------------
    def _config(self, name, rung, K, seed, exact=()):
        """The ReuseConfig of `rung` on layer `name`, with the planes of the run's PlaneBank."""
        return self.plane_bank.config(name, rung, K, seed, exact)

    def _bind_planes(self, model, names, probes, step):
        self.plane_bank.bind(model, {n: self._layers[n] for n in names if n in self._layers}, probes, self.comm)
        self.plane_bank.refresh(step)

    def _plane_events(self, step):
        """Events of the plane fits made since the last call ("planes" kind; from == to)."""
        out = []
        for name, text in self.plane_bank.done():
            label = self.label(name)
            out.append(dict(self._event(step, name, label, label, text), kind="planes"))
        return out

    def fingerprint(self):
        """crc32 of what every rank must agree on each step: the rung labels and the planes."""
        labels = json.dumps(self.labels(), sort_keys=True).encode()
        return zlib.crc32(labels, self.plane_bank.fingerprint())

    # -- per-step decisions -------------------------------------------------------------------
    def label(self, name):
        plan = self.plans.get(name)
        if plan is None or plan["index"] >= len(plan["rungs"]):
            return EXACT
        return self.plane_bank.label(plan["rungs"][plan["index"]].label(plan["K"]))

    def labels(self):
        return {name: self.label(name) for name in self._layers}

    def active(self):
        return [n for n, p in self.plans.items() if p["index"] < len(p["rungs"])]

    def _event(self, step, layer, old, new, reason):
        return {"kind": "rung", "step": int(step), "layer": layer, "from": old, "to": new, "reason": reason}

    def _set_index(self, step, name, index, reason):
        plan = self.plans[name]
        index = min(index, len(plan["rungs"]))
        if index == plan["index"]:
            return []
        old = self.label(name)
        plan["index"] = index
        plan["since"] = step
        self._apply(name)
        return [self._event(step, name, old, self.label(name), reason)]

    def _apply(self, name):
        plan, layer = self.plans[name], self._layers[name]
        if plan["index"] >= len(plan["rungs"]):
            layer.reuse = None
        else:
            layer.reuse = self._config(name, plan["rungs"][plan["index"]], plan["K"], plan["seed"], self.exact)

    def _apply_all(self):
        for name in self.plans:
            self._apply(name)

    def before_step(self, step, steps_per_epoch):
        """Plane refits, milestones and the exact tail; returns the events."""
        events = []
        self.plane_bank.at(step)
        if self.plane_bank.due(step):
            self.plane_bank.refresh(step)
            self._apply_all()
        if self.strategy == "ladder":
            target = self._ladder_target(step)
            for name in self.plans:
                events += self._set_index(step, name, target,
                                          f"ladder milestone at epoch {step / steps_per_epoch:.2f}")
        if self.tail_start is not None and step >= self.tail_start and self.strategy != "exact":
            for name in self.active():
                events += self._set_index(step, name, 10 ** 9, f"exact tail: last {self.exact_tail:.0%} "
                                          f"of the steps (from step {self.tail_start})")
        return self._plane_events(step) + events

    def after_step(self, step, loss, model, probes):
        """Plateau and loss-gap triggers of the adaptive strategy; returns events."""
        if self.strategy != "adaptive" or not self.active():
            return []
        self.plane_bank.at(step + 1)                    # the weights after this step
        if probes:
            self.plane_bank.probe = probes[0]
        events = []
        self.recent_losses.append(float(loss))
        w = self.plateau_window
        if len(self.recent_losses) >= 2 * w:
            prev = float(np.mean(self.recent_losses[:w]))
            cur = float(np.mean(self.recent_losses[w:2 * w]))
            improvement = (prev - cur) / max(abs(prev), 1e-12)
            dwelt = [n for n in self.active() if step + 1 - self.plans[n].get("since", 0) >= self.min_dwell_steps]
            if improvement < self.plateau_eps and dwelt:
                for name in dwelt:
                    events += self._advance(step + 1, name, model, probes,
                                            f"plateau: mean loss over {w} steps improved "
                                            f"{improvement:+.2%} < {self.plateau_eps:.2%}, "
                                            f"on this rung since step {self.plans[name].get('since', 0)})")
                self.recent_losses = []
            else:
                self.recent_losses = self.recent_losses[w:]
        if self.check_every and (step + 1) % self.check_every == 0 and self.active():
            events += self._gap_check(step + 1, model, probes[:self.probe_batches])
        return events + self._plane_events(step + 1)

    def _advance(self, step, name, model, probes, reason):
        """Move `name` one rung finer. With the default layers, rungs the cost model says no longer
        pay at the rc measured now are skipped: rc grows as training makes the features more
        varied (CifarNet's conv2, l2 L=64 H=16: rc 0.31 at the start, 0.46 at the end)."""
        plan = self.plans[name]
        index, skipped = plan["index"] + 1, []
        while self.layer_names is None and index < len(plan["rungs"]):
            rung = plan["rungs"][index]
            rc, gain = self._rung_gain(model, name, rung, plan["seed"], probes)
            if gain >= self.min_speedup:
                break
            skipped.append(f"{rung.label(plan['K'])}: rc {rc:.3f} now, predicted speed-up {gain:.2f}x")
            index += 1
        if skipped:
            reason += f"; skipped, below min speed-up {self.min_speedup:g}x: " + "; ".join(skipped)
        return self._set_index(step, name, index, reason)

    def _gap_check(self, step, model, probes):
        gaps = self.loss_gaps(model, probes)
        events = []
        for name, (gap, exact_loss) in gaps.items():
            if gap > self.gap_delta:
                events += self._advance(step, name, model, probes,
                                        f"loss gap: reuse in {name} raises the probe loss by "
                                        f"{gap:+.1%} over exact ({exact_loss:.4f}) > {self.gap_delta:.0%}")
        return events

    def loss_gaps(self, model, probes):
        """{layer: (relative loss increase with reuse in that layer alone, exact loss)}."""
        def probe_loss():
            total, count = 0.0, 0
            for x, y in probes:
                if len(y):
                    s, _ = cross_entropy_loss(model.forward(x), y)
                    total, count = total + s, count + len(y)
            total, count = self._reduce([total, count])
            return total / max(count, 1)
        layers = engine_layers(model)
        saved = [(l, l.reuse) for _, l in layers]
        was_training = model.training
        try:
            model.eval()
            for l, _ in saved:
                l.reuse = None
            exact = probe_loss()
            out = {}
            for name in self.active():
                self._apply(name)
                out[name] = ((probe_loss() - exact) / max(exact, 1e-12), exact)
                self._layers[name].reuse = None
            return out
        finally:
            for l, r in saved:
                l.reuse = r
            model.train(was_training)

    # -- state --------------------------------------------------------------------------------
    def state_dict(self):
        return {"strategy": self.strategy, "tail_start": self.tail_start, "min_dwell_steps": self.min_dwell_steps,
                "recent_losses": list(self.recent_losses),
                "milestones": [list(m) for m in self.milestones],
                "plans": {n: {"rungs": [r.to_dict() for r in p["rungs"]], "index": p["index"],
                              "K": p["K"], "seed": p["seed"], "since": p.get("since", 0)}
                          for n, p in self.plans.items()},
                "planes": self.plane_bank.state_dict()}

    def load_state_dict(self, state, model, probes=None):
        """Restore a schedule (no re-calibration) and apply its rungs to `model`. `probes`: the
        run's probe batches, for the data-aware plane refits still to come."""
        if state["strategy"] != self.strategy:
            raise ValueError(f"checkpoint schedule is {state['strategy']!r}, run asks for {self.strategy!r}")
        self._bind(model)
        self.tail_start = state["tail_start"]
        self.min_dwell_steps = int(state.get("min_dwell_steps", 0))
        self.recent_losses = [float(v) for v in state["recent_losses"]]
        self.milestones = [tuple(m) for m in state["milestones"]]
        self.plans = {n: {"rungs": [Rung.from_dict(r) for r in p["rungs"]], "index": int(p["index"]),
                          "K": int(p["K"]), "seed": int(p["seed"]), "since": int(p.get("since", 0))}
                      for n, p in state["plans"].items()}
        missing = [n for n in self.plans if n not in self._layers]
        if missing:
            raise ValueError(f"checkpoint schedule names layers {missing} that the model lacks")
        self.plane_bank.bind(model, {n: self._layers[n] for n in self.plans}, probes, self.comm)
        self.plane_bank.load_state_dict(state.get("planes"))
        self._apply_all()
        self.plane_bank.done()


def parse_ladder(entries):
    """[(epoch, Rung | None)] from [{"epoch": e, "L":.., "H":.., "hash":..} | {"epoch": e, "exact": true}]."""
    out = []
    for e in entries:
        if not isinstance(e, dict) or "epoch" not in e:
            raise ValueError(f"ladder entries need an 'epoch' key, got {e!r}")
        epoch = float(e["epoch"])
        if not math.isfinite(epoch) or epoch < 0:
            raise ValueError(f"ladder epoch must be >= 0, got {e['epoch']!r}")
        if e.get("exact"):
            out.append((epoch, None))
        else:
            out.append((epoch, Rung.from_dict({k: v for k, v in e.items() if k != "epoch"})))
    if [ep for ep, _ in out] != sorted(ep for ep, _ in out):
        raise ValueError("ladder epochs must be increasing")
    return out


def default_ladder(epochs, rung_fine=None):
    """The anchors' "ladder from fine": sign L25 H20, then H24 from 3/8 of the run, exact from 3/4."""
    first = Rung(25, 20)
    second = rung_fine or Rung(25, 24)
    return [(0.0, first), (0.375 * epochs, second), (0.75 * epochs, None)]
