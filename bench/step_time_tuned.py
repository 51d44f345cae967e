"""Whole training step (forward + backward of the model, batch 128) exact vs the tuner's picks
at a fixed error budget, trained weights, exact and tuned steps interleaved; per-layer engine time.

    python bench/step_time_tuned.py runs/vgg11w05-exact/last.npz [PAIRS=5] [BUDGET=0.3]
"""
import sys, time, statistics, numpy as np
from pyadr.train.checkpoint import load_model
from pyadr.train.data import load_dataset
from pyadr.train.loader import BatchLoader
from pyadr.train.layer_tuner import TunedSchedule
from pyadr.train.models import engine_layers
from pyadr.nn import softmax_cross_entropy
ckpt, reps = sys.argv[1], int(sys.argv[2]) if len(sys.argv) > 2 else 5
budget = float(sys.argv[3]) if len(sys.argv) > 3 else 0.3
model, meta = load_model(ckpt)
d = load_dataset(meta["config"]["dataset"])
idx = np.random.default_rng(1).permutation(len(d.train_images))[:256]
ld = BatchLoader(d.train_images[idx], d.train_labels[idx], 128, d.mean, d.std, shuffle=False, prefetch=0)
probes = [(x, y) for _, x, y in ld.epoch(0)]
s = TunedSchedule(budget_start=budget, budget_end=budget, exact_tail=0.0)
t0 = time.perf_counter(); events = s.setup(model, probes[:1], 100, 1000); tune_s = time.perf_counter() - t0
picks = s.labels()
print("tuning took %.1f s; picks:" % tune_s, picks)
saved = {n: l.reuse for n, l in engine_layers(model)}
def step(reuse_on):
    for n, l in engine_layers(model):
        l.reuse = saved[n] if reuse_on else None
    for n, l in engine_layers(model):
        l.engine_seconds = 0.0
    model.train(); x, y = probes[1]
    t = time.perf_counter(); _, dl, _ = softmax_cross_entropy(model.forward(x), y); model.backward(dl)
    dt = time.perf_counter() - t
    per[reuse_on].append({n: l.engine_seconds for n, l in engine_layers(model)})
    return dt
per = {False: [], True: []}
step(False); step(True)
ex, tu = [], []
for i in range(reps):
    ex.append(step(False)); tu.append(step(True))
ratios = [b / a for a, b in zip(ex, tu)]
print("exact ms", [round(1e3*v) for v in ex]); print("tuned ms", [round(1e3*v) for v in tu])
print("median exact %.0f ms, tuned %.0f ms, median ratio tuned/exact %.3f" % (1e3*statistics.median(ex), 1e3*statistics.median(tu), statistics.median(ratios)))
for on in (False, True):
    print("tuned" if on else "exact", "per-layer engine ms (median):", {n: round(1e3*statistics.median(r[n] for r in per[on][2:])) for n in per[on][0]})
