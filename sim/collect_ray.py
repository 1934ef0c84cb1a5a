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
cluster's CPUs (never more actors than the cluster has CPUs); episodes go to an actor once it has
started, two in flight per actor, so an actor never waits for the driver and an actor still waiting
for a CPU holds none. A cluster on which nothing moves for ``STALL_SECONDS`` is reported.

Bit-identical results across machines assume the same wheels (PyBullet, NumPy) and glibc and, for
x86, that all nodes' CPUs have FMA or none do (``benchmarks/determinism.py``; docs/results/scale-out.md).
"""

from __future__ import annotations

import os
import time
import warnings
from collections import deque
from pathlib import Path
from typing import TYPE_CHECKING

from sim.collection import EpisodeRecorder, Progress, dispatch_order
from sim.dataset_format import shard_name
from sim.recording import ShardWriter

if TYPE_CHECKING:
    from sim.collection import CollectConfig

ACTOR_NAMESPACE = "mmrep"
IN_FLIGHT_PER_ACTOR = 2
STALL_SECONDS = 300.0  # s without an actor starting or an episode finishing: a stalled cluster


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
    elif address.strip() not in ("auto", "local") and "://" not in address:  # ray://, a Ray Client: its own check
        address = address.strip()
        check_reachable(address)  # ray.init retries an address nobody listens on for minutes
    ray.init(address=address, namespace=ACTOR_NAMESPACE, include_dashboard=False, log_to_driver=False,
             configure_logging=False)
    return ray, True


def check_reachable(address: str, timeout_s: float = 10.0) -> None:
    """``ConnectionError`` naming ``address`` ("host:port", a Ray head's GCS) unless a TCP connection
    to it opens within ``timeout_s``."""
    import socket

    host, sep, port = address.rpartition(":")
    if not sep or not port.isdigit():
        raise ValueError(f"ray_address={address!r} must be 'auto', 'local', 'host:port' (e.g. 10.0.0.5:6379) "
                         f"or a ray:// address")
    try:
        with socket.create_connection((host.strip("[]") or "127.0.0.1", int(port)), timeout=timeout_s):
            pass
    except OSError as err:
        raise ConnectionError(f"ray_address={address}: no Ray head answers there ({err.strerror or err}); start "
                              f"one with `ray start --head` or fix the address") from None


def actor_name(index: int) -> str:
    """Ray name of this driver's actor ``index`` (namespace ``mmrep``); unique per driver process."""
    return f"collect-{os.getpid()}-{index}"


def collect_on_ray(cfg: CollectConfig, todo: list[int], out: Path, resumed: int = 0,
                   progress: bool = True, stall_s: float = STALL_SECONDS) -> None:
    """Record the episodes ``todo`` on Ray actors and write them into ``out``'s ``shard_000.h5``.

    Joins the Ray instance at ``cfg.ray_address`` (``None``: starts a local one, shut down at the end;
    an instance this process already started with ``ray.init`` is used as it is). ``cfg.workers``
    actors (None: one per CPU of the cluster), at most one per episode and one per CPU of the cluster
    (each asks for one CPU; more could never all be scheduled: a warning says so). Episodes go only to
    actors that have started, as they start, so an actor that waits for a CPU holds none. When
    nothing starts and nothing finishes for ``stall_s`` seconds (every CPU taken by other work), a
    ``RuntimeError`` says so instead of waiting in silence; what was written is kept.
    """
    ray, started = init_ray(cfg.ray_address)
    cpus = int(ray.cluster_resources().get("CPU", 0))
    n_actors = min(cfg.workers or max(cpus, 1), max(cpus, 1), len(todo))
    if cfg.workers is not None and cfg.workers > max(cpus, 1):
        warnings.warn(f"workers={cfg.workers} but the Ray cluster has {cpus} CPU(s) and each collection actor "
                      f"needs one: starting {n_actors} actor(s)", stacklevel=2)
    recorder = ray.remote(num_cpus=1, max_restarts=-1, max_task_retries=-1)(EpisodeRecorder)
    actors = [recorder.options(name=actor_name(i), namespace=ACTOR_NAMESPACE).remote(cfg) for i in range(n_actors)]
    order = deque(dispatch_order(cfg, todo))
    starting = {actor.__ray_ready__.remote(): actor for actor in actors}  # not yet given episodes
    pending: dict = {}

    def submit(actor) -> None:
        if order:
            index = order.popleft()
            pending[actor.record.remote(index)] = (actor, index)

    bar = Progress(len(todo), n_actors, "ray", out, progress, resumed)
    try:
        with ShardWriter(out / shard_name(0), cfg.compression) as writer:
            last_event = time.monotonic()
            while pending or (order and starting):
                ready, _ = ray.wait([*pending, *starting], num_returns=1, timeout=min(stall_s, 5.0))
                if not ready:
                    if time.monotonic() - last_event > stall_s:
                        raise RuntimeError(
                            f"the Ray cluster stalled: no collection actor started and no episode finished in "
                            f"{stall_s:.0f} s ({len(actors) - len(starting)} of {len(actors)} actors running, "
                            f"{len(order) + len(pending)} episodes left, cluster CPUs free "
                            f"{ray.available_resources().get('CPU', 0):g} of {cpus}); the episodes written so "
                            f"far are kept: free CPUs or lower workers=, and run the same command to resume")
                    continue
                last_event = time.monotonic()
                ref = ready[0]
                if ref in starting:
                    actor = starting.pop(ref)
                    ray.get(ref)
                    for _ in range(IN_FLIGHT_PER_ACTOR):
                        submit(actor)
                    continue
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
