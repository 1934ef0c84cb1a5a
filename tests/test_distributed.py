"""DDP training (``torchrun -m mmrep.train``) with 2 CPU processes on gloo, against 1 process."""

import json
import os
import subprocess
import sys

import h5py
import numpy as np
import pytest
from conftest import collect_small, kill_at_step

from mmrep.distributed import rank_batches
from mmrep.train import TrainConfig, train
from sim.reference_layout import export_reference

# Documented tolerance (README, "Scaling out"): the 2-process run computes the same global batches,
# negatives and gradients up to float summation order; only rank 1's draws of z's sampling noise
# differ from what one process draws for those samples. Measured: at most 8e-5 relative here.
DDP_REL_TOL = 1e-3
ARGS = ["epochs=2", "batch_size=16", "num_workers=0", "max_batches_per_epoch=6", "threads=1",
        "ckpt_every_steps=1", "progress=false"]


@pytest.fixture(scope="module")
def data(tmp_path_factory):
    return collect_small(tmp_path_factory.mktemp("ddp_data"), episodes=5, max_steps=55)


def _torchrun(data, out, wait: bool = True, extra: tuple[str, ...] = ()):
    cmd = [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node", "2",
           "-m", "mmrep.train", f"data={data}", f"out={out}", *ARGS, *extra]
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    if wait:
        proc = subprocess.run(cmd, env=env, capture_output=True, text=True)
        assert proc.returncode == 0, proc.stderr[-3000:]
        return json.loads((out / "metrics.json").read_text())
    return subprocess.Popen(cmd, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
                            start_new_session=True)


def _close(x, y, tol):
    return all(abs(x[k] - y[k]) <= tol * max(1.0, abs(x[k])) for k in x if k != "train_seconds")


def test_rank_batches_split_each_global_batch_between_the_ranks():
    order = list(range(37))
    one = rank_batches(order, 8, 0, 5)
    assert one == [order[i:i + 8] for i in range(0, 37, 8)]
    r0, r1, r2 = (rank_batches(order, 8, 0, 5, rank, 3) for rank in range(3))
    assert len(r0) == len(r1) == len(r2) == 5  # every rank steps every time
    for b in range(5):
        assert r0[b] + r1[b] + r2[b] == one[b]
    assert len(rank_batches(order, 8, 0, 5, 0, 6)) == 4  # the last 5 samples cannot feed 6 ranks
    assert rank_batches(order, 8, 2, 4, 1, 2) == [order[20:24], order[28:32]]


def test_two_gloo_processes_reach_the_one_process_metrics(data, tmp_path):
    one = train(TrainConfig(data=str(data), out=str(tmp_path / "one"), epochs=2, batch_size=16, num_workers=0,
                            max_batches_per_epoch=6, threads=1, ckpt_every_steps=1), progress=False)
    two = _torchrun(data, tmp_path / "two")
    assert two["processes"] == 2 and one["processes"] == 1
    assert _close(two["final"], one["final"], DDP_REL_TOL), (two["final"], one["final"])
    assert (tmp_path / "two" / "encoder.pt").exists() and not list((tmp_path / "two").glob("*rank*"))


def test_skipped_samples_are_counted_over_every_rank(data, tmp_path):
    files = export_reference(data, tmp_path / "ref", window=10)
    for name in files:  # NaN force in a few steps of every episode: each rank's share holds some
        with h5py.File(name, "a") as f:
            f["ee_forces_continuous"][3:12, 10:20] = np.nan
    one = train(TrainConfig(data=str(tmp_path / "ref"), out=str(tmp_path / "one"), epochs=2, batch_size=16,
                            num_workers=0, max_batches_per_epoch=6, threads=1, skip_nonfinite=True), progress=False)
    two = _torchrun(tmp_path / "ref", tmp_path / "two", extra=("skip_nonfinite=true",))
    assert one["skipped_samples"] > 0
    assert two["skipped_samples"] == one["skipped_samples"]  # the same global batches, summed over ranks
    assert two["final"]["skipped_samples"] == one["final"]["skipped_samples"]


@pytest.mark.slow  # two more 2-process runs: about a minute
def test_a_killed_ddp_run_resumes_and_matches_the_uninterrupted_one(data, tmp_path):
    reference = _torchrun(data, tmp_path / "ref")
    out = tmp_path / "killed"
    kill_at_step(_torchrun(data, out, wait=False), out, 8, group=True)  # mid epoch 2
    resumed = _torchrun(data, out)
    # Every rank's RNG state is in the checkpoint: the resumed run is the uninterrupted one.
    assert _close(resumed["final"], reference["final"], 1e-6), (resumed["final"], reference["final"])


def test_a_half_set_up_launch_is_refused_naming_the_variables(monkeypatch):
    from mmrep.distributed import DistContext

    monkeypatch.setenv("WORLD_SIZE", "2")
    for key in ("RANK", "MASTER_ADDR", "MASTER_PORT"):
        monkeypatch.delenv(key, raising=False)
    with pytest.raises(ValueError, match="RANK, MASTER_ADDR, MASTER_PORT not set: start the processes with torchrun"):
        DistContext.from_env("cpu")
    monkeypatch.setenv("WORLD_SIZE", "1")
    assert not DistContext.from_env("cpu").enabled
