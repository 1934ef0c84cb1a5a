"""A full disk loses nothing that was complete: collection, its repair and resume, and checkpoints,
on a real, small tmpfs (the tests mount one; they are skipped where mounting is not allowed)."""

import subprocess
import sys
import uuid
from pathlib import Path

import pytest
import torch

from sim.collect import CollectConfig, collect
from sim.dataset_format import info, scan_shards, verify
from sim.recording import ShardWriteError

ENV = {"max_steps": 10, "image_size": 32}


@pytest.fixture
def small_disk(tmp_path):
    """A mounted tmpfs of ``size`` KiB: ``small_disk(size) -> folder``; unmounted at the end."""
    mounted = []

    def mount(size_kib: int) -> Path:
        where = tmp_path / f"disk_{uuid.uuid4().hex[:6]}"
        where.mkdir()
        r = subprocess.run(["mount", "-t", "tmpfs", "-o", f"size={size_kib}k", "tmpfs", str(where)],
                           capture_output=True, text=True)
        if r.returncode != 0:
            pytest.skip(f"cannot mount a tmpfs here (needs root): {r.stderr.strip()}")
        mounted.append(where)
        return where

    yield mount
    for where in mounted:
        subprocess.run(["umount", "-l", str(where)], capture_output=True)


def _cfg(out, episodes=30, **kw):
    return CollectConfig(episodes=episodes, out=str(out), env=dict(ENV), workers=1, seed=5, **kw)


def test_full_disk_stops_collection_with_one_line_and_the_moved_folder_resumes(small_disk, tmp_path):
    disk = small_disk(1600)
    out = disk / "ds"
    with pytest.raises(ShardWriteError) as err:
        collect(_cfg(out), progress=False)
    msg = str(err.value)
    assert msg.startswith("disk full") and str(out) in msg and "\n" not in msg
    kept = scan_shards(out)
    assert 0 < len(kept) < 30
    # nothing but the missing manifest is wrong: every episode in the shard is complete and intact
    assert [p for p in verify(out) if "manifest" not in p] == []
    # the folder moved to a larger disk: the same command finishes it, the kept episodes unchanged
    moved = tmp_path / "moved"
    subprocess.run(["cp", "-r", str(out), str(moved)], check=True)
    manifest = collect(_cfg(moved), progress=False)
    assert manifest["complete"] and manifest["totals"]["episodes"] == 30
    assert verify(moved) == []
    final = {e["index"]: e["checksum"] for e in manifest["episodes"]}
    assert all(final[i] == e["checksum"] for i, e in kept.items())


UNGUARDED = """
import sys
from sim.recording import ShardWriter
from sim.collect import CollectConfig, collect
ShardWriter.check_free_space = False  # let HDF5 run into the full disk itself
collect(CollectConfig(episodes=30, out=sys.argv[1], env={"max_steps": 10, "image_size": 32}, workers=1,
                      seed=5), progress=False)
"""


def test_a_shard_damaged_by_a_full_disk_is_read_repaired_and_resumed(small_disk, tmp_path):
    """HDF5 itself hitting the full disk leaves a shard whose last objects point past its end (h5py then
    raises KeyError, RuntimeError or OSError by where it looks): verify, info and the resume cope."""
    disk = small_disk(700)
    out = disk / "ds"
    r = subprocess.run([sys.executable, "-c", UNGUARDED, str(out)], capture_output=True, text=True, timeout=300)
    assert r.returncode != 0  # it did run out of space
    problems = verify(out)  # never raises, whatever the damage
    assert problems
    d = info(out)  # idem, and says what is wrong
    readable = d["episodes"]
    moved = tmp_path / "moved"
    subprocess.run(["cp", "-r", str(out), str(moved)], check=True)
    with pytest.warns(UserWarning, match="damaged|could not be read") if d["warnings"] else _no_warning():
        manifest = collect(_cfg(moved), progress=False)
    assert manifest["complete"] and manifest["totals"]["episodes"] == 30
    assert verify(moved) == []
    # a clean collection of the same settings gives the same episodes
    clean = collect(_cfg(tmp_path / "clean"), progress=False)
    assert [e["checksum"] for e in clean["episodes"]] == [e["checksum"] for e in manifest["episodes"]]
    assert readable <= 30


class _no_warning:
    def __enter__(self):
        return self

    def __exit__(self, *exc):
        return False


def test_checkpoint_on_a_full_disk_says_so_names_the_file_and_leaves_no_partial_file(small_disk):
    from mmrep.torch_files import DiskFullError, save_atomic

    disk = small_disk(1024)
    path = disk / "last.pt"
    save_atomic({"w": torch.zeros(1000)}, path)  # an earlier, good checkpoint
    with pytest.raises(DiskFullError, match=f"disk full: could not write {path}"):
        save_atomic({"w": torch.zeros(2_000_000)}, path)  # 8 MB on a 1 MB disk
    assert sorted(p.name for p in disk.iterdir()) == ["last.pt"]  # no last.pt.tmp
    assert torch.load(path, weights_only=True)["w"].shape == (1000,)  # the old one is intact


def test_policy_checkpoint_on_a_full_disk_is_refused_by_name(small_disk):
    """``mmrep policy train``'s checkpoint goes through the same writer: the replay buffer too."""
    import numpy as np

    from mmrep.torch_files import DiskFullError, write_atomic

    disk = small_disk(512)
    with pytest.raises(DiskFullError, match="replay_buffer.npz"):
        write_atomic(np.zeros(1_000_000).tobytes(), disk / "replay_buffer.npz")
    assert list(disk.iterdir()) == []


def test_mmrep_train_on_a_full_disk_says_so_names_the_checkpoint_and_leaves_no_partial_file(small_disk, tmp_path,
                                                                                          capsys):
    from mmrep.cli import main as cli

    data = tmp_path / "data"
    collect(CollectConfig(episodes=3, out=str(data), env={"max_steps": 6, "image_size": 64}, workers=1,
                          policies={"contact_seeking": 1.0}, valid_fraction=0.34), progress=False)
    run = small_disk(2048) / "run"  # room for the logs, not for a checkpoint (tens of MB)
    code = cli(["train", f"data={data}", f"out={run}", "epochs=1", "batch_size=4", "max_batches_per_epoch=2",
                "max_val_batches=1", "num_workers=0", "threads=1", "progress=false"])
    err = capsys.readouterr().err
    assert code == 2
    assert f"mmrep train: error: disk full: could not write {run}/" in err and ".pt" in err
    assert not list(run.rglob("*.tmp*"))
