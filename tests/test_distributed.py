"""Data-parallel training (pyadr.train.distributed): the 1-process implementation, batch
slicing, the error without mpi4py, and real 2-rank runs under mpiexec (skipped, with the reason,
when mpiexec or mpi4py is missing): bit-identical weights on every rank, the 1-rank loss curve
reproduced, --resume with another rank count, and a failing or killed rank ending the job."""
import json
import os
import shutil
import signal
import subprocess
import sys
import time

import numpy as np
import pytest

from pyadr.train import distributed
from pyadr.train.data import load_dataset
from pyadr.train.distributed import Single, connect, default_threads, launcher_size, shard_bounds
from pyadr.train.loader import BatchLoader

HERE = os.path.dirname(os.path.abspath(__file__))
DRIVER = os.path.join(HERE, "mpi_driver.py")
FASHION = "/usr/share/datasets/fashion-mnist/train-images-idx3-ubyte.gz"
TINY = {"model": "tiny", "dataset": "synthetic", "batch_size": 32, "lr": 0.05, "seed": 3,
        "threads": 1, "progress": False, "L": 6, "H": 8, "plateau_window": 3, "check_every": 6}


# -- unit tests: no MPI needed ---------------------------------------------------------------
@pytest.mark.parametrize("n,size", [(128, 2), (96, 2), (7, 3), (1, 2), (130, 8)])
def test_shards_partition_a_batch(n, size):
    bounds = [shard_bounds(n, r, size) for r in range(size)]
    assert bounds[0][0] == 0 and bounds[-1][1] == n
    assert all(a[1] == b[0] for a, b in zip(bounds, bounds[1:]))
    lengths = [hi - lo for lo, hi in bounds]
    assert max(lengths) - min(lengths) <= 1


def test_shard_rank_out_of_range_is_an_error():
    with pytest.raises(ValueError, match=r"rank must be in \[0, 2\)"):
        shard_bounds(10, 2, 2)
    data = load_dataset("synthetic")
    with pytest.raises(ValueError, match="rank must be in"):
        BatchLoader(data.train_images, data.train_labels, 8, data.mean, data.std, shard=(3, 2))


def test_sharded_batches_together_are_the_global_batch_with_augmentation():
    data = load_dataset("synthetic")
    kw = dict(seed=5, crop_pad=2, flip=True, prefetch=0)
    whole = BatchLoader(data.train_images, data.train_labels, 40, data.mean, data.std, **kw)
    shards = [BatchLoader(data.train_images, data.train_labels, 40, data.mean, data.std, shard=(r, 3), **kw)
              for r in range(3)]
    for (step, x, y), *parts in zip(whole.epoch(1), *[s.epoch(1) for s in shards]):
        assert all(p[0] == step for p in parts)
        np.testing.assert_array_equal(np.concatenate([p[1] for p in parts]), x)
        np.testing.assert_array_equal(np.concatenate([p[2] for p in parts]), y)
        assert sum(len(p[2]) for p in parts) == whole.global_rows(step) == len(y)


def test_single_collectives_are_the_identity():
    comm = Single()
    assert (comm.rank, comm.size, comm.local_rank, comm.local_size, comm.is_root) == (0, 1, 0, 1, True)
    flat = np.arange(5, dtype=np.float32)
    assert comm.allreduce_sum(flat) is flat
    np.testing.assert_array_equal(comm.allgather([1.0, 2.0]), [[1.0, 2.0]])
    assert comm.bcast({"a": 1}) == {"a": 1}
    comm.barrier()
    assert comm.comm_seconds == 0.0


@pytest.mark.parametrize("env,size", [
    ({}, None), ({"OMPI_COMM_WORLD_SIZE": "4"}, 4), ({"PMI_SIZE": "2"}, 2), ({"PMIX_RANK": "0"}, 0),
    ({"SLURM_STEP_NUM_TASKS": "8"}, None),                      # sbatch shell, not an srun task
    ({"SLURM_STEP_NUM_TASKS": "8", "SLURM_PROCID": "3"}, 8),
])
def test_launcher_detection(env, size):
    assert launcher_size(env) == size


def test_threads_share_the_cores_among_local_ranks():
    assert default_threads(1, cpus=2, environ={}) == 2
    assert default_threads(2, cpus=2, environ={}) == 1
    assert default_threads(4, cpus=2, environ={}) == 1
    assert default_threads(2, cpus=16, environ={}) == 8
    assert default_threads(2, cpus=16, environ={"SLURM_CPUS_PER_TASK": "4"}) == 4
    assert default_threads(1) >= 1


def test_auto_and_none_give_single_without_a_launcher():
    assert isinstance(connect("auto", environ={}), Single)
    assert isinstance(connect("none", environ={"OMPI_COMM_WORLD_SIZE": "2"}), Single)
    assert isinstance(connect("auto", environ={"OMPI_COMM_WORLD_SIZE": "1"}), Single)
    with pytest.raises(ValueError, match="distributed must be one of auto, none, mpi"):
        connect("tcp")


class FakeComm(Single):
    """Rank 0 of `size` processes that never communicate: for the trainer's argument checks."""

    def __init__(self, size):
        super().__init__()
        self.size, self.local_size = size, size


@pytest.mark.parametrize("changes,message", [
    ({"batch_size": 2}, r"batch_size \(2\) is the global batch and must be at least the number of ranks \(4\)"),
    ({"device": "cuda"}, "data-parallel training runs on device 'cpu' only"),
])
def test_trainer_rejects_what_data_parallel_cannot_do(tmp_path, changes, message):
    from pyadr.train.config import TrainConfig
    from pyadr.train.trainer import Trainer
    cfg = TrainConfig(**dict(TINY, out=str(tmp_path / "run"), **changes))
    with pytest.raises(ValueError, match=message):
        Trainer(cfg, comm=FakeComm(4))


def test_missing_mpi4py_gives_one_clear_error(monkeypatch, tmp_path, capsys):
    monkeypatch.setitem(sys.modules, "mpi4py", None)       # makes `import mpi4py` raise ImportError
    with pytest.raises(RuntimeError, match=r"--distributed mpi was asked.*pip install pyadr\[mpi\]"):
        connect("mpi")
    with pytest.raises(RuntimeError, match=r"MPI launcher \(2 ranks\).*pip install pyadr\[mpi\]"):
        connect("auto", environ={"OMPI_COMM_WORLD_SIZE": "2"})
    from pyadr.cli import train as cli
    argv = ["train", "--model", "tiny", "--dataset", "synthetic", "--no-progress", "--out",
            str(tmp_path / "run"), "--distributed", "mpi"]
    assert cli.main(argv) == 1
    assert "pip install pyadr[mpi]" in capsys.readouterr().err
    monkeypatch.setattr(distributed, "_active", None)


def test_plain_train_does_not_import_mpi4py(tmp_path):
    code = ("import sys; from pyadr.cli import train as cli; "
            f"rc = cli.main(['train', '--model', 'tiny', '--dataset', 'synthetic', '--epochs', '0.25', "
            f"'--no-progress', '--out', {str(tmp_path / 'run')!r}]); "
            "assert rc == 0, rc; assert 'mpi4py' not in sys.modules, 'mpi4py was imported'")
    env = {k: v for k, v in os.environ.items() if k not in distributed._SIZE_VARS and k != "PMIX_RANK"}
    # cwd: not the checkout, whose pyadr/ (without the built extension) would shadow the installed one
    proc = subprocess.run([sys.executable, "-c", code], env=env, timeout=120, capture_output=True, text=True,
                          cwd=str(tmp_path))
    assert proc.returncode == 0, proc.stderr[-3000:]


# -- 2 ranks under mpiexec ---------------------------------------------------------------------
def _mpiexec():
    found = shutil.which("mpiexec") or shutil.which("mpiexec", path=os.path.dirname(sys.executable))
    if not found:
        pytest.skip("mpiexec not found (pip install pyadr[mpi] installs mpi4py and Open MPI)")
    try:
        import mpi4py  # noqa: F401
    except ImportError:
        pytest.skip("mpi4py is not installed (pip install pyadr[mpi])")
    return found


def mpi_command(n, *argv):
    """`mpiexec -n N ...` as this container needs it: Open MPI refuses root without
    --allow-run-as-root and more ranks than cores without --oversubscribe."""
    cmd = [_mpiexec(), "-n", str(n)]
    version = subprocess.run([cmd[0], "--version"], capture_output=True, text=True, timeout=30).stdout
    if "Open MPI" in version or "OpenRTE" in version or "prte" in version.lower():
        cmd += ["--oversubscribe"] + (["--allow-run-as-root"] if os.geteuid() == 0 else [])
    return cmd + list(argv)


def _settings(tmp_path, name, **changes):
    path = tmp_path / f"{name}.json"
    settings = dict(TINY, out=str(tmp_path / name), **changes)
    path.write_text(json.dumps(settings))
    return str(path)


def run_driver(tmp_path, name, ranks, timeout=240, extra=(), **changes):
    """(completed process, [per-rank result npz]) of one driver run with `ranks` processes."""
    settings, results = _settings(tmp_path, name, **changes), str(tmp_path / f"{name}-result")
    argv = [sys.executable, DRIVER, settings, results, *extra]
    cmd = mpi_command(ranks, *argv) if ranks > 1 else argv
    proc = subprocess.run(cmd, capture_output=True, text=True, timeout=timeout)
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
    return proc, [np.load(os.path.join(results, f"rank{r}.npz")) for r in range(ranks)]


def _weights(npz):
    return {k: npz[k] for k in npz.files if k.startswith("model/")}


def assert_bit_identical(a, b):
    wa, wb = _weights(a), _weights(b)
    assert wa.keys() == wb.keys()
    for k in wa:
        assert wa[k].tobytes() == wb[k].tobytes(), f"{k} differs between ranks"


def test_two_ranks_end_with_bit_identical_weights_adaptive(tmp_path):
    # 481 images: the last batch of each epoch holds 1 image, so rank 0's slice of it is empty
    proc, (r0, r1) = run_driver(tmp_path, "adaptive", 2, epochs=1.5, reuse="adaptive", limit_train=481,
                                reuse_layers=["conv2"], min_dwell=0.0, augment=True)
    assert_bit_identical(r0, r1)
    np.testing.assert_array_equal(r0["losses"], r1["losses"])
    assert len(r0["losses"]) == 24
    assert "data-parallel over 2 ranks" in proc.stdout
    records = [json.loads(line) for line in open(tmp_path / "adaptive" / "metrics.jsonl")]
    assert any(r["kind"] == "rung" and r["layer"] == "conv2" for r in records)


def test_two_ranks_hash_with_the_same_data_aware_planes(tmp_path):
    """--planes pca: moments summed over the ranks' probe slices, rank 0's planes broadcast; the
    per-step fingerprint includes the planes, so a difference would stop the run."""
    proc, (r0, r1) = run_driver(tmp_path, "pca", 2, epochs=1, reuse="fixed", hash="l2", L=6, H=6,
                                reuse_layers=["conv2"], min_speedup=0.0, planes="pca", planes_every=4)
    assert_bit_identical(r0, r1)
    np.testing.assert_array_equal(r0["losses"], r1["losses"])
    records = [json.loads(line) for line in open(tmp_path / "pca" / "metrics.jsonl")]
    fits = [r for r in records if r["kind"] == "planes"]
    assert [r["step"] for r in fits][:2] == [0, 4] and "[planes] step 4: conv2" in proc.stdout


def test_batchnorm_and_dropout_stay_in_sync(tmp_path):
    """VGG-11 has BatchNorm (running statistics averaged over the ranks) and dropout."""
    _, (r0, r1) = run_driver(tmp_path, "vgg", 2, model="vgg11", width=0.125, batch_size=16, epochs=0.5)
    assert_bit_identical(r0, r1)
    assert any("running_var" in k for k in r0.files)
    assert len(r0["losses"]) == 16 and np.isfinite(r0["losses"]).all()


def test_two_ranks_reproduce_the_one_rank_loss_curve(tmp_path):
    kw = dict(epochs=1.5, reuse="exact", augment=True, batch_size=31)     # slices of 15 and 16 images
    _, (one,) = run_driver(tmp_path, "one", 1, **kw)
    _, (two, _) = run_driver(tmp_path, "two", 2, **kw)
    assert len(one["losses"]) == 26
    a, b = one["losses"][:20], two["losses"][:20]
    assert len(a) == len(b) == 20
    np.testing.assert_allclose(b, a, rtol=1e-4)
    m1 = [json.loads(x) for x in open(tmp_path / "one" / "metrics.jsonl")]
    m2 = [json.loads(x) for x in open(tmp_path / "two" / "metrics.jsonl")]
    e1, e2 = [r for r in m1 if r["kind"] == "epoch"], [r for r in m2 if r["kind"] == "epoch"]
    assert [r["step"] for r in e1] == [r["step"] for r in e2]
    for r1, r2 in zip(e1, e2):      # sharded evaluation sees the whole test set
        assert r2["test_acc"] == pytest.approx(r1["test_acc"], abs=2 / 512)
        assert r2["train_loss"] == pytest.approx(r1["train_loss"], rel=1e-3)


def test_resume_with_another_number_of_ranks(tmp_path):
    kw = dict(epochs=1.5, reuse="exact")
    _, (whole,) = run_driver(tmp_path, "whole", 1, **kw)
    _, (first,) = run_driver(tmp_path, "part", 1, stop_after_steps=10, **kw)
    assert len(first["losses"]) == 10
    resume = str(tmp_path / "part" / "last.npz")
    _, (r0, r1) = run_driver(tmp_path, "part", 2, resume=resume, **kw)
    assert_bit_identical(r0, r1)
    assert len(r0["losses"]) == 14
    np.testing.assert_allclose(r0["losses"], whole["losses"][10:], rtol=1e-4)


def test_cli_train_under_mpiexec(tmp_path):
    out = str(tmp_path / "cli")
    cmd = mpi_command(2, sys.executable, "-m", "pyadr", "train", "--model", "tiny", "--dataset", "synthetic",
                      "--batch-size", "32", "--epochs", "1", "--reuse", "adaptive", "--threads", "1",
                      "--no-progress", "--out", out)
    proc = subprocess.run(cmd, capture_output=True, text=True, timeout=120, cwd=str(tmp_path))
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert proc.stdout.count("final test accuracy") == 1          # rank 0 alone logs
    assert sorted(os.listdir(out)) == ["best.npz", "config.json", "last.npz", "metrics.csv", "metrics.jsonl", "steps.csv"]


def test_cli_compare_under_mpiexec(tmp_path):
    out = str(tmp_path / "cmp")
    cmd = mpi_command(2, sys.executable, "-m", "pyadr", "compare", "--model", "tiny", "--dataset", "synthetic",
                      "--batch-size", "32", "--epochs", "1", "--reuse", "fixed", "--L", "4", "--H", "6",
                      "--reuse-layers", "conv2", "--no-progress", "--out", out)
    proc = subprocess.run(cmd, capture_output=True, text=True, timeout=120, cwd=str(tmp_path))
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert proc.stdout.count("time saved by reuse") == 1               # rank 0 alone tabulates
    for run in ("exact", "fixed"):
        assert os.path.exists(os.path.join(out, run, "last.npz"))


@pytest.mark.skipif(not os.path.exists(FASHION), reason="Fashion-MNIST is not installed")
def test_issue_command_fashion_mnist_bit_identical(tmp_path):
    """The issue's check: cifarnet, --limit-train 4096 --epochs 1 --reuse adaptive --threads 1."""
    _, (r0, r1) = run_driver(tmp_path, "fm", 2, timeout=400, model="cifarnet", dataset="fashion-mnist",
                             batch_size=128, limit_train=4096, epochs=1, reuse="adaptive",
                             plateau_window=50, check_every=200, eval_batch_size=500)
    assert_bit_identical(r0, r1)
    assert len(r0["losses"]) == 32


def _wait_for(paths, proc, seconds):
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        if all(os.path.exists(p) for p in paths):
            return True
        if proc.poll() is not None:
            return False
        time.sleep(0.2)
    return False


def test_failing_rank_ends_the_job_with_a_clear_error(tmp_path):
    settings, results = _settings(tmp_path, "fail", epochs=50), str(tmp_path / "fail-result")
    cmd = mpi_command(2, sys.executable, DRIVER, settings, results, "--raise-at-step", "3", "--raise-rank", "1")
    t0 = time.monotonic()
    proc = subprocess.run(cmd, capture_output=True, text=True, timeout=90)
    assert proc.returncode != 0
    assert time.monotonic() - t0 < 60
    assert "injected failure at global step 3" in proc.stderr
    assert "rank 1 of 2 raised ValueError; aborting the MPI job" in proc.stderr


def test_killed_rank_ends_the_job(tmp_path):
    settings, results = _settings(tmp_path, "kill", epochs=200), str(tmp_path / "kill-result")
    cmd = mpi_command(2, sys.executable, DRIVER, settings, results)
    proc = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    try:
        pids = [os.path.join(results, f"pid{r}") for r in range(2)]
        assert _wait_for(pids, proc, 60), "the ranks did not start training"
        os.kill(int(open(pids[1]).read()), signal.SIGKILL)
        t0 = time.monotonic()
        _, err = proc.communicate(timeout=90)
        assert time.monotonic() - t0 < 60
        assert proc.returncode != 0
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.communicate()


def test_sigusr1_to_mpiexec_stops_every_rank_after_the_same_step(tmp_path):
    settings, results = _settings(tmp_path, "usr1", epochs=2000), str(tmp_path / "usr1-result")
    proc = subprocess.Popen(mpi_command(2, sys.executable, DRIVER, settings, results),
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    try:
        assert _wait_for([os.path.join(results, f"pid{r}") for r in range(2)], proc, 60)
        proc.send_signal(signal.SIGUSR1)            # mpiexec forwards it to every rank
        out, err = proc.communicate(timeout=90)
        assert proc.returncode == 0, err[-3000:]
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.communicate()
    r0, r1 = (np.load(os.path.join(results, f"rank{r}.npz")) for r in range(2))
    assert_bit_identical(r0, r1)
    steps = len(r0["losses"])
    assert len(r1["losses"]) == steps < 2000 * 16
    from pyadr.train.checkpoint import load_checkpoint
    meta, state, _ = load_checkpoint(str(tmp_path / "usr1" / "last.npz"))
    assert meta["position"]["global_step"] == steps
    for k, v in state.items():
        assert v.tobytes() == r0["model/" + k].tobytes()
