"""Dataset collection: schema, determinism across worker counts, crash safety and resume."""

import json
import os
import signal
import subprocess
import sys
import time

import h5py
import numpy as np
import pytest

from sim.collect import CollectConfig, collect, plan_episode
from sim.dataset_format import (
    episode_checksum,
    read_episode_arrays,
    scan_shards,
    specs_from_group,
    validate_episode,
)
from sim.recording import ShardWriteError, ShardWriter

SMALL = {"max_steps": 8, "image_size": 32}


def _cfg(out, **kw):
    return CollectConfig(**{"episodes": 4, "out": str(out), "env": SMALL, "workers": 1, **kw})


def _checksums(manifest):
    return {e["index"]: e["checksum"] for e in manifest["episodes"]}


@pytest.fixture(scope="module")
def reference(tmp_path_factory):
    """An uninterrupted single-worker collection of 6 episodes."""
    out = tmp_path_factory.mktemp("reference")
    return collect(_cfg(out, episodes=6), progress=False), out


def test_episodes_follow_the_schema_and_checksums_match(reference):
    manifest, out = reference
    assert manifest["complete"] and manifest["totals"]["episodes"] == 6
    for e in manifest["episodes"]:
        with h5py.File(out / e["shard"], "r") as f:
            group = f["data"][e["name"]]
            specs = specs_from_group(group)
            arrays = read_episode_arrays(group, specs)
            assert validate_episode(arrays, specs, e["num_steps"]) == []
            assert episode_checksum(arrays, specs) == e["checksum"] == group.attrs["checksum"]
            assert arrays["obs/rgb"].shape == (e["num_steps"] + 1, 32, 32, 3)
            assert group["obs/rgb"].chunks == (1, 32, 32, 3) and group["obs/rgb"].compression == "lzf"
            assert json.loads(group.attrs["env_config"])["peg_shape"] == e["peg_shape"]
            assert "numpy" in json.loads(f.attrs["versions"])


def test_plan_depends_on_seed_and_index_only():
    a, b = CollectConfig(seed=3), CollectConfig(seed=3, workers=7, out="elsewhere")
    assert [plan_episode(a, i) for i in range(10)] == [plan_episode(b, i) for i in range(10)]
    assert plan_episode(a, 0) != plan_episode(CollectConfig(seed=4), 0)


def test_split_is_by_episode_and_written_as_masks(reference):
    manifest, out = reference
    train, valid = manifest["splits"]["train"], manifest["splits"]["valid"]
    assert len(valid) == 1 and len(train) == 5 and not set(train) & set(valid)
    names = set()
    for shard in manifest["shards"]:
        with h5py.File(out / shard, "r") as f:
            names |= {n.decode() for n in f["mask/valid"][()]}
    assert names == set(valid)


def test_two_workers_give_the_same_episodes(reference, tmp_path):
    manifest, _ = reference
    two = collect(_cfg(tmp_path, episodes=6, workers=2), progress=False)
    assert len(two["shards"]) == 2
    assert _checksums(two) == _checksums(manifest)


def test_partial_episode_is_ignored_then_removed(reference, tmp_path):
    manifest, _ = reference
    cfg = _cfg(tmp_path, episodes=2)
    collect(cfg, progress=False)
    with h5py.File(tmp_path / "shard_000.h5", "a") as f:  # what a crash mid-episode leaves
        g = f["data"].create_group("ep_000005")
        g.create_dataset("actions", data=np.zeros((3, 3), np.float32))
    assert sorted(scan_shards(tmp_path)) == [0, 1]
    with ShardWriter(tmp_path / "shard_000.h5") as writer:
        assert writer.removed_partial == ["ep_000005"]
        assert sorted(writer.completed()) == [0, 1]


def test_resume_collects_only_missing_episodes(reference, tmp_path):
    manifest, _ = reference
    first = collect(_cfg(tmp_path, episodes=3), progress=False)
    assert sorted(_checksums(first)) == [0, 1, 2]
    with h5py.File(tmp_path / "shard_000.h5", "a") as f:  # mark what the first run wrote
        for name in f["data"]:
            f["data"][name].attrs["first_run"] = True
    full = collect(_cfg(tmp_path, episodes=6), progress=False)
    assert _checksums(full) == _checksums(manifest)
    with h5py.File(tmp_path / "shard_000.h5", "r") as f:
        kept = {int(f["data"][n].attrs["index"]) for n in f["data"] if "first_run" in f["data"][n].attrs}
        new = {int(f["data"][n].attrs["index"]) for n in f["data"] if "first_run" not in f["data"][n].attrs}
    assert kept == {0, 1, 2}  # not recorded again (a rewrite would have dropped the mark)
    assert new == {3, 4, 5}


def test_fewer_episodes_than_the_folder_holds_keeps_them_and_says_so(reference, tmp_path, capsys):
    """Asking a folder of 3 episodes for 2 keeps the 3: the manifest and the recorded config both
    say 3 (the config used to record the smaller number), and the collection is complete."""
    collect(_cfg(tmp_path, episodes=3), progress=False)
    manifest = collect(_cfg(tmp_path, episodes=2), progress=False)
    assert "stays planned at 3 episodes, not 2" in capsys.readouterr().err
    assert manifest["complete"] and manifest["totals"]["episodes"] == 3 and manifest["config"]["episodes"] == 3
    assert json.loads((tmp_path / "collect_config.json").read_text())["episodes"] == 3


def test_resume_with_other_settings_is_refused(tmp_path):
    collect(_cfg(tmp_path, episodes=1), progress=False)
    with pytest.raises(ValueError, match="seed"):
        collect(_cfg(tmp_path, episodes=1, seed=9), progress=False)


def test_resume_of_a_folder_written_before_new_env_options_existed(tmp_path):
    collect(_cfg(tmp_path, episodes=1), progress=False)
    path = tmp_path / "collect_config.json"
    old = json.loads(path.read_text())
    for key in ("occluder", "push"):  # options added later, off by default
        del old["env"][key]
    del old["env"]["ft_sensor"]["bias"]
    path.write_text(json.dumps(old))
    collect(_cfg(tmp_path, episodes=2), progress=False)  # resumes: the missing options take their defaults
    with pytest.raises(ValueError, match="env"):
        collect(_cfg(tmp_path, episodes=2, env={**SMALL, "push": {"rate_hz": 1.0}}),
                progress=False)


_COLLECT_SCRIPT = """
import sys
from sim.collect import CollectConfig, collect
collect(CollectConfig(episodes=10, out=sys.argv[1], env={"max_steps": 12, "image_size": 32}, workers=2),
        progress=False)
"""


def test_sigkill_then_resume_matches_uninterrupted_run(tmp_path):
    reference = collect(_cfg(tmp_path / "ref", episodes=10, env={"max_steps": 12, "image_size": 32}),
                        progress=False)
    out = tmp_path / "killed"
    proc = subprocess.Popen([sys.executable, "-c", _COLLECT_SCRIPT, str(out)])
    deadline = time.time() + 120
    while time.time() < deadline and proc.poll() is None:
        time.sleep(0.02)
        try:
            if len(scan_shards(out, wait=0, locking=False)) >= 2:
                break
        except (OSError, RuntimeError):  # a shard is half created; try again
            pass
    assert proc.poll() is None, "the collection finished before it could be killed"
    os.kill(proc.pid, signal.SIGKILL)  # the main process; its orphaned workers stop by themselves
    proc.wait()
    survived = scan_shards(out)  # every episode completed before the kill is readable
    assert 2 <= len(survived) < 10
    for e in survived.values():
        with h5py.File(out / e["shard"], "r") as f:
            group = f["data"][e["name"]]
            specs = specs_from_group(group)
            assert episode_checksum(read_episode_arrays(group, specs), specs) == e["checksum"]
    assert not (out / "manifest.json").exists()  # never written for the killed run
    resumed = collect(_cfg(out, episodes=10, workers=2, env={"max_steps": 12, "image_size": 32}),
                      progress=False)
    assert resumed["complete"]
    assert _checksums(resumed) == _checksums(reference)


def test_write_error_names_the_file(tmp_path):
    blocker = tmp_path / "not_a_dir"
    blocker.write_text("")
    with pytest.raises(ShardWriteError, match="not_a_dir"):
        ShardWriter(blocker / "shard_000.h5")


def test_second_writer_of_a_shard_fails_loudly(tmp_path):
    with ShardWriter(tmp_path / "shard_000.h5"):
        with pytest.raises(ShardWriteError, match="another process"):
            ShardWriter(tmp_path / "shard_000.h5", lock_timeout=0.2)


@pytest.mark.parametrize("kwargs, name", [({"episodes": 0}, "episodes"), ({"shapes": ["star"]}, "shapes"),
                                          ({"policies": {"teleport": 1.0}}, "policies"),
                                          ({"compression": "zstd"}, "compression"),
                                          ({"valid_fraction": 1.5}, "valid_fraction")])
def test_bad_collect_config_raises(kwargs, name, tmp_path):
    with pytest.raises(ValueError, match=name):
        collect(_cfg(tmp_path, **kwargs), progress=False)


def test_disk_full_gives_clear_error_and_keeps_earlier_episodes(tmp_path, monkeypatch):
    """Disk full cannot be made cheaply here, so the failure is injected at the HDF5 call."""
    import errno

    import gymnasium as gym

    from sim.recording import record_episode, specs_for_env
    from sim.task import make_expert

    env = gym.make("mmrep/PegInsertion-v0", compute_flow=True, **SMALL)
    policy = make_expert("random", env.unwrapped.cfg)
    specs = specs_for_env(env)
    shard = tmp_path / "shard_000.h5"
    with ShardWriter(shard) as writer:
        arrays, attrs = record_episode(env, policy, seed=1)
        good = writer.write(0, arrays, attrs, specs)
        real = h5py.Group.create_dataset
        calls = {"n": 0}

        def failing(self, *args, **kwargs):
            calls["n"] += 1
            if calls["n"] > 3:  # part of the episode is written, then the disk is full
                raise OSError(errno.ENOSPC, "No space left on device")
            return real(self, *args, **kwargs)

        monkeypatch.setattr(h5py.Group, "create_dataset", failing)
        with pytest.raises(ShardWriteError, match="disk full") as err:
            writer.write(1, arrays, attrs, specs)
        assert str(shard) in str(err.value)
        monkeypatch.setattr(h5py.Group, "create_dataset", real)
    env.close()
    found = scan_shards(tmp_path)
    assert list(found) == [0] and found[0]["checksum"] == good
    with ShardWriter(shard) as writer:
        assert writer.removed_partial == ["ep_000001"]


def test_collect_benchmark_steps_the_same_episodes_as_collect(tmp_path):
    """``benchmarks/collect.py``'s env-only baseline runs the episodes collect() records (the env section given
    as a dict, as the benchmark gives it), step for step."""
    from conftest import load_benchmark

    env_only = load_benchmark("collect").env_only
    args = dict(episodes=2, env={"max_steps": 6, "image_size": 32, "physics_hz": 240.0}, seed=3)
    rate, steps = env_only(CollectConfig(**args, out=str(tmp_path / "unused")))
    manifest = collect(CollectConfig(**args, out=str(tmp_path / "data"), workers=1), progress=False)
    assert rate > 0 and steps == manifest["totals"]["steps"] > 0
