"""``mmrep collect backend=ray`` against a local Ray instance: the same dataset as the local backend."""

import json
import os
import signal
import subprocess
import sys
import threading
import time

import h5py
import numpy as np
import pytest

from sim.collect import CollectConfig, collect
from sim.dataset_format import DATA_GROUP, dataset_arrays, is_complete, read_manifest

ray = pytest.importorskip("ray")

EPISODES = 4


@pytest.fixture(scope="module")
def local_dataset(tmp_path_factory):
    out = tmp_path_factory.mktemp("local")
    collect(CollectConfig(episodes=EPISODES, workers=1, out=str(out), seed=3), progress=False)
    return out


def _assert_same_dataset(a, b):
    ma, mb = read_manifest(a), read_manifest(b)
    assert [e["checksum"] for e in ma["episodes"]] == [e["checksum"] for e in mb["episodes"]]
    assert ma["splits"] == mb["splits"] and ma["complete"] and mb["complete"]
    xa, xb = dataset_arrays(a), dataset_arrays(b)
    assert xa.keys() == xb.keys()
    for name in xa:
        assert xa[name].keys() == xb[name].keys()
        for path in xa[name]:
            np.testing.assert_array_equal(xa[name][path], xb[name][path], err_msg=f"{name}/{path}")


def test_ray_collection_equals_the_local_one_array_by_array(ray_local, local_dataset, tmp_path):
    out = tmp_path / "ray"
    manifest = collect(CollectConfig(episodes=EPISODES, workers=2, backend="ray", out=str(out), seed=3),
                       progress=False)
    assert manifest["shards"] == ["shard_000.h5"]  # the driver writes every episode
    _assert_same_dataset(local_dataset, out)


def test_a_killed_ray_actor_is_restarted_and_the_dataset_is_unchanged(ray_local, local_dataset, tmp_path):
    out = tmp_path / "ray_killed"
    cfg = CollectConfig(episodes=EPISODES, workers=2, backend="ray", out=str(out), seed=3)
    errors = []
    worker = threading.Thread(target=lambda: _run(cfg, errors))
    worker.start()
    deadline = time.time() + 120
    names = []
    while time.time() < deadline and not names:
        names = [a["name"] for a in ray.util.list_named_actors(all_namespaces=True)
                 if a["name"].startswith(f"collect-{os.getpid()}-")]
        time.sleep(0.2)
    assert names, "the collection's actors never appeared"
    # At once: every episode is already handed out (two per actor in flight), so the killed actor's
    # calls are the ones Ray must retry on its restarted replacement, however fast the machine is.
    ray.kill(ray.get_actor(names[0], namespace="mmrep"), no_restart=False)  # a crash: Ray restarts it
    worker.join(timeout=600)
    assert not worker.is_alive() and not errors, errors
    _assert_same_dataset(local_dataset, out)


def _run(cfg, errors):
    try:
        collect(cfg, progress=False)
    except BaseException as err:  # reported to the test thread
        errors.append(err)


@pytest.mark.slow  # two Ray instances started from scratch: about a minute
def test_a_killed_ray_driver_resumes_with_the_same_command(local_dataset, tmp_path):
    out = tmp_path / "ray_driver"
    cmd = [sys.executable, "-m", "mmrep.cli", "collect", f"episodes={EPISODES}", "workers=2", "backend=ray",
           "seed=3", f"out={out}", "progress=false"]
    proc = subprocess.Popen(cmd, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, start_new_session=True)
    shard = out / "shard_000.h5"
    deadline = time.time() + 180
    while time.time() < deadline and proc.poll() is None:
        if shard.exists() and _complete_episodes(shard) >= 1:
            break
        time.sleep(0.2)
    assert proc.poll() is None, "the collection ended before it could be killed"
    os.killpg(proc.pid, signal.SIGKILL)  # the driver and the Ray instance it started
    proc.wait()
    assert not (out / "manifest.json").exists() or not json.loads((out / "manifest.json").read_text())["complete"]
    subprocess.run(cmd, check=True, capture_output=True)
    _assert_same_dataset(local_dataset, out)


def _complete_episodes(shard) -> int:
    try:
        with h5py.File(shard, "r", locking=False) as f:
            return sum(1 for g in f.get(DATA_GROUP, {}).values() if is_complete(g))
    except OSError:  # being written
        return 0


def test_bad_backend_settings_are_refused_by_name():
    with pytest.raises(ValueError, match="backend must be one of"):
        CollectConfig(backend="dask").validate()
    with pytest.raises(ValueError, match="ray_address=.*needs backend=ray"):
        CollectConfig(ray_address="auto").validate()


def test_without_ray_installed_the_backend_is_refused_by_name(monkeypatch):
    import importlib.util

    real = importlib.util.find_spec
    monkeypatch.setattr(importlib.util, "find_spec", lambda name, *a: None if name == "ray" else real(name, *a))
    with pytest.raises(ValueError, match="backend=ray needs Ray: pip install 'mmrep\\[ray\\]'"):
        CollectConfig(backend="ray").validate()


def test_more_workers_than_cluster_cpus_are_capped_with_a_warning_and_finish(ray_local, local_dataset, tmp_path):
    out = tmp_path / "crowded"
    cfg = CollectConfig(episodes=EPISODES, workers=4, backend="ray", out=str(out), seed=3)  # 2 CPUs
    with pytest.warns(UserWarning, match="workers=4 but the Ray cluster has 2 CPU"):
        manifest = collect(cfg, progress=False)
    assert manifest["complete"]
    _assert_same_dataset(local_dataset, out)


def test_a_stalled_cluster_is_reported_and_what_was_written_is_kept(ray_local, tmp_path):
    from sim.collect_ray import collect_on_ray

    @ray.remote(num_cpus=2)
    class Hog:  # takes every CPU of the local cluster, so no collection actor can start
        def ping(self):
            return 1

    hog = Hog.remote()
    ray.get(hog.ping.remote())
    try:
        cfg = CollectConfig(episodes=2, workers=2, backend="ray", out=str(tmp_path), seed=3)
        cfg.validate()
        t0 = time.time()
        with pytest.raises(RuntimeError, match=r"the Ray cluster stalled: no collection actor started .*\(0 of 2 "
                                               r"actors running.*run the same command to resume"):
            collect_on_ray(cfg, [0, 1], tmp_path, progress=False, stall_s=3.0)
        assert time.time() - t0 < 60
    finally:
        ray.kill(hog)
    # the CPUs free again, the same collection finishes
    assert collect(cfg, progress=False)["complete"]


def test_an_address_no_ray_head_answers_on_is_refused_at_once():
    from sim.collect_ray import check_reachable

    t0 = time.time()
    with pytest.raises(ConnectionError, match="ray_address=127.0.0.1:1: no Ray head answers there"):
        check_reachable("127.0.0.1:1")  # ray.init itself retried such an address for minutes
    assert time.time() - t0 < 10
    with pytest.raises(ValueError, match="must be 'auto', 'local', 'host:port'"):
        check_reachable("headnode")
