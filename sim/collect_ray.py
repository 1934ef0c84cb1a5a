"""``mmrep collect backend=ray``: collection workers as Ray actors, on this machine or a cluster.

Each actor is an ``EpisodeRecorder`` (one PyBullet client per peg shape) and records the episodes
this process asks for by index; the finished arrays come back through Ray's object store and this
process (the driver) writes them into ``shard_000.h5`` of the output folder. So nodes need no shared
filesystem, only mmrep installed (or a Ray ``runtime_env``), and everything the local backend
guarantees holds unchanged: episode ``i`` depends on ``(seed, i)`` only, the manifest, checksums and
split are rebuilt from the shard, and a killed driver resumes with the same command.

A killed or lost actor is restarted by Ray and its unfinished episodes are recorded again
(``max_restarts=-1``, ``max_task_retries=-1``); the retry gives the same bytes because an episode is
a function of its index alone. Each actor asks for one CPU, so ``workers`` actors spread over the
cluster's CPUs; two episodes are kept in flight per actor, so an actor never waits for the driver.

Bit-identical results across machines assume the same wheels (PyBullet, NumPy) and glibc and, for
x86, that all nodes' CPUs have FMA or none do (``benchmarks/determinism.py``; docs/results/scale-out.md).
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import TYPE_CHECKING

from sim.collect import EpisodeRecorder, Progress, dispatch_order
from sim.dataset_format import shard_name
from sim.recording import ShardWriter

if TYPE_CHECKING:
    from sim.collect import CollectConfig

ACTOR_NAMESPACE = "mmrep"
IN_FLIGHT_PER_ACTOR = 2


def import_ray():
    """The ``ray`` module, or an ImportError that says how to install it."""
    try:
        import ray
    except ImportError as err:
        raise ImportError("backend=ray needs Ray: pip install 'mmrep[ray]' (or pip install ray)") from err
    return ray


def init_ray(address: str | None):
    """Join the Ray instance at ``address`` (``"auto"``, ``"host:6379"``), or start a local one (None).
    Returns ``(ray, started)``: ``started`` when this call started or joined it (the caller shuts it
    down); an instance this process already joined is used as it is.

    Ray nices its workers to 15 by default, so on a busy machine they would get what other jobs
    leave; a local instance started here gives them the same priority as this process (the local
    backend's workers have it too), unless ``RAY_worker_niceness`` is set already."""
    ray = import_ray()
    if ray.is_initialized():
        return ray, False
    if address is None:
        os.environ.setdefault("RAY_worker_niceness", "0")
    ray.init(address=address, namespace=ACTOR_NAMESPACE, include_dashboard=False, log_to_driver=False,
             configure_logging=False)
    return ray, True


def actor_name(index: int) -> str:
    """Ray name of this driver's actor ``index`` (namespace ``mmrep``); unique per driver process."""
    return f"collect-{os.getpid()}-{index}"


def collect_on_ray(cfg: CollectConfig, todo: list[int], out: Path, resumed: int = 0,
                   progress: bool = True) -> None:
    """Record the episodes ``todo`` on Ray actors and write them into ``out``'s ``shard_000.h5``.

    Joins the Ray instance at ``cfg.ray_address`` (``None``: starts a local one, shut down at the end;
    an instance this process already started with ``ray.init`` is used as it is). ``cfg.workers``
    actors (None: one per CPU of the cluster, at most one per episode).
    """
    ray, started = init_ray(cfg.ray_address)
    n_actors = min(cfg.workers or max(int(ray.cluster_resources().get("CPU", 1)), 1), len(todo))
    recorder = ray.remote(num_cpus=1, max_restarts=-1, max_task_retries=-1)(EpisodeRecorder)
    actors = [recorder.options(name=actor_name(i), namespace=ACTOR_NAMESPACE).remote(cfg) for i in range(n_actors)]
    order = iter(dispatch_order(cfg, todo))
    pending: dict = {}

    def submit(actor) -> None:
        index = next(order, None)
        if index is not None:
            pending[actor.record.remote(index)] = (actor, index)

    bar = Progress(len(todo), n_actors, "ray", out, progress, resumed)
    try:
        for _ in range(IN_FLIGHT_PER_ACTOR):
            for actor in actors:
                submit(actor)
        with ShardWriter(out / shard_name(0), cfg.compression) as writer:
            while pending:
                [ref], _ = ray.wait(list(pending), num_returns=1)
                actor, index = pending.pop(ref)
                arrays, attrs, specs = ray.get(ref)
                writer.write(index, arrays, attrs, specs)
                bar.tick(index, attrs["num_steps"], attrs["success"])
                submit(actor)
    finally:
        bar.close()
        for actor in actors:
            ray.kill(actor)
        if started:
            ray.shutdown()
