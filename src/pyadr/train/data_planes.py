"""Which hash planes the reuse schedules give their layers: seeded random, or data-aware.

PlaneBank(kind) builds every ReuseConfig a schedule runs or measures (`config(name, rung, K, seed,
exact)`):
  "random"       the rung's seeded Gaussian planes (ReuseConfig(seed=...)); nothing is measured.
  "pca"          the top-H principal directions of the layer's L-long sub-vectors (second moment,
                 uncentred), pyadr.planes, fitted on the first probe batch's input to the layer.
  "pca-centred"  the same from the covariance.
A fit is kept per (layer, L) as its moments' eigendecomposition (any H of that L comes from
it) until the next refit: every `every` steps (0: fitted once, when first needed). A fit
needs the layers' inputs: one exact training-mode forward + backward of the probe batch
(layer_tuner.capture_layer_io), taken at most once per schedule decision point and dropped after
it, so a fit depends only on the weights at the step it is made (a resumed run refits alike; the
fits made so far travel in the schedule's state). For hash="l2" width_scale is multiplied by the
fit's width_factor: the width stays width_scale x the RMS of the projections, as with random
planes (pyadr.planes).

Data-parallel runs: each rank computes the moments of its slice of the probe batch; the moments
are summed over the ranks (identical sums on every rank) and rank 0's eigenvectors are broadcast,
so every rank hashes with the same planes; `fingerprint()` joins the per-step rung check.
"""
from __future__ import annotations

import time
import zlib

import numpy as np

from .. import planes as pp
from .layer_io import capture_layer_io

KINDS = ("random", "pca", "pca-centred")
SUFFIX = {"random": "", "pca": " pca", "pca-centred": " pca-c"}


def layer_geometry(layer):
    """Keywords of pyadr.planes for `layer`'s im2col rows: the convolution's geometry, or
    kernel_size=None for a linear layer. A layer may provide its own `plane_geometry()`."""
    own = getattr(layer, "plane_geometry", None)
    if callable(own):
        return own()
    if hasattr(layer, "kernel_size"):
        return dict(kernel_size=layer.kernel_size, stride=layer.stride, padding=layer.padding,
                    dilation=layer.dilation)
    return dict(kernel_size=None)


class PlaneBank:
    def __init__(self, kind="random", every=0, rows=pp.DEFAULT_ROWS):
        if kind not in KINDS:
            raise ValueError(f"planes must be one of {', '.join(KINDS)}, got {kind!r}")
        if isinstance(every, bool) or not isinstance(every, (int, np.integer)) or every < 0:
            raise ValueError(f"planes_every must be an int >= 0 (0: fit once), got {every!r}")
        self.kind, self.every, self.rows = kind, int(every), int(rows)
        self.centred = kind == "pca-centred"
        self.fits = {}              # (name, L) -> {"step", "vecs", "proj_ms", "ms"}: see _fit
        self.notes = []             # [(layer, text)]: the fits made at the current decision point
        self.model = self.probe = self.layers = self.comm = None
        self.step = 0
        self._inputs = None

    @property
    def data_aware(self):
        return self.kind != "random"

    def bind(self, model, layers, probes, comm=None):
        """The model, its engine layers {name: layer}, the probe batches and the communicator."""
        self.model, self.layers, self.comm = model, dict(layers), comm
        self.probe = probes[0] if probes else None

    def label(self, text):
        return text + SUFFIX[self.kind]

    # -- configs -----------------------------------------------------------------------------
    def config(self, name, rung, K, seed, exact=()):
        cfg = rung.config(K, seed, exact)
        if not self.data_aware:
            return cfg
        planes, factor = self.planes(name, cfg.L, cfg.H)
        scale = cfg.width_scale * (factor if cfg.hash == "l2" else 1.0)
        return cfg.replace(planes=planes, width_scale=scale)

    def planes(self, name, L, H):
        """((L, H) planes, l2 width factor) of layer `name`, fitting them when needed."""
        fit = self.fits.get((name, L))
        if fit is None:
            fit = self._fit(name, L)
        rms = np.sqrt(max(float(np.mean(fit["proj_ms"][:H])), 0.0))
        estimate = np.sqrt(fit["ms"])               # unit planes: sqrt(mean(x**2) * 1)
        return fit["vecs"][:, :H], (rms / estimate if estimate > 0 and rms > 0 else 1.0)

    def _fit(self, name, L):
        if self.model is None or self.probe is None:
            raise RuntimeError("data-aware planes need the model and a probe batch (PlaneBank.bind)")
        t0 = time.perf_counter()
        x = self._layer_inputs()[name]
        layer = self.layers[name]
        geom = layer_geometry(layer)
        if geom.get("kernel_size") is None:
            x = x.reshape(len(x), -1)
        if len(x):
            m = pp.subvector_moments(x, L, rows=self.rows, seed=self._sample_seed(name, L), **geom).to_vector()
        else:                                   # an empty slice of the probe on this rank
            m = np.zeros(L * L + L + 3)
        if self.comm is not None and self.comm.size > 1:
            m = self.comm.allgather(list(m)).sum(axis=0)
        moments = pp.Moments.from_vector(m, L)
        H = min(L, 64)
        fit = pp.planes_from_moments(moments, H, centred=self.centred)
        vecs = fit.planes
        if self.comm is not None and self.comm.size > 1:
            vecs = np.asarray(self.comm.bcast(vecs), dtype=np.float64)
        second = moments.outer / max(moments.count, 1.0)
        entry = {"step": self.step, "vecs": vecs,                    # (L, min(L, 64)), largest first
                 "proj_ms": np.einsum("lh,lk,kh->h", vecs, second, vecs),   # mean (s . p_h)**2 per h
                 "ms": moments.x_sq_sum / max(moments.x_size, 1.0)}         # mean(x**2) of the input
        self.fits[name, L] = entry
        ms = 1e3 * (time.perf_counter() - t0)
        top = ", ".join(f"{v:.3g}" for v in fit.variances[:4])
        self.notes.append((name, f"L{L}: {self.kind} planes fitted at step {self.step} on "
                                 f"{int(moments.count)} sub-vectors in {ms:.0f} ms (top variances {top})"))
        return entry

    @staticmethod
    def _sample_seed(name, L):
        """Seed of the im2col rows sampled for layer `name` at length L (the same at every refit)."""
        return [zlib.crc32(name.encode()), int(L)]

    def _layer_inputs(self):
        if self._inputs is None:
            io = capture_layer_io(self.model, self.layers, self.probe)
            self._inputs = {n: v[0] for n, v in io.items()}
        return self._inputs

    # -- cadence -----------------------------------------------------------------------------
    def due(self, step):
        """True when the fits are older than the refit cadence at `step` (then call refresh)."""
        return (self.data_aware and self.every > 0 and step > 0 and step % self.every == 0
                and any(f["step"] < step for f in self.fits.values()))

    def refresh(self, step):
        """Forget the fits: the next config() of each layer refits on the current weights."""
        self.fits = {}
        self.step = step

    def at(self, step):
        """The step whose weights the next fits see; drops inputs captured at another decision point."""
        self.step = step
        self._inputs = None

    def use_inputs(self, inputs):
        """Inputs {name: x} the caller captured at this decision point (the tuner's)."""
        self._inputs = dict(inputs)

    def done(self):
        """End of a decision point: drop the captured inputs; returns (and clears) the fit notes,
        [(layer, text)]."""
        self._inputs = None
        notes, self.notes = self.notes, []
        return notes

    # -- state -------------------------------------------------------------------------------
    def fingerprint(self):
        crc = 0
        for key in sorted(self.fits):
            crc = zlib.crc32(np.ascontiguousarray(self.fits[key]["vecs"]).tobytes(), crc)
        return crc

    def state_dict(self):
        return {"kind": self.kind, "every": self.every,
                "fits": [{"layer": n, "L": L, "step": f["step"], "vecs": f["vecs"].tolist(),
                          "proj_ms": f["proj_ms"].tolist(), "ms": f["ms"]} for (n, L), f in sorted(self.fits.items())]}

    def load_state_dict(self, state):
        if state is None:
            state = {"kind": "random", "fits": []}
        if state["kind"] != self.kind:
            raise ValueError(f"checkpoint schedule used {state['kind']!r} planes, the run asks for {self.kind!r}")
        self.fits = {(f["layer"], int(f["L"])): {"step": int(f["step"]), "vecs": np.asarray(f["vecs"], dtype=np.float64),
                                                 "proj_ms": np.asarray(f["proj_ms"], dtype=np.float64),
                                                 "ms": float(f["ms"])} for f in state["fits"]}
