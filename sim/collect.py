"""Parallel, resumable dataset collection: worker processes, one PyBullet client and one shard each.

Episode ``i`` is fully determined by ``(seed, i)``: its peg shape, its policy (drawn from the
mixture) and its env seed. So a dataset does not depend on how many workers made it or how often
it was interrupted: a killed run, run again with the same command, collects only the missing
episodes and ends with the same per-episode checksums as an uninterrupted run.

The manifest (``manifest.json``) indexes shards, episodes, step counts, checksums and the
train/valid split (by episode); it is rebuilt from the shards' complete episodes at the end of
every run, so it never lists a partial episode. The same split is written into each shard as
robomimic-style ``mask/train`` and ``mask/valid`` (episode names).
"""

from __future__ import annotations

import fcntl
import json
import multiprocessing as mp
import os
import queue as queue_mod
import shutil
import time
import traceback
import warnings
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import gymnasium as gym
import h5py
import numpy as np

from sim.config import PEG_SHAPES
from sim.policies import POLICIES, make_policy
from sim.recording import COMPRESSIONS, ShardWriter, record_episode, specs_for_env
from sim.schema import DATA_GROUP, SCHEMA_VERSION

MANIFEST = "manifest.json"


@dataclass
class CollectConfig:
    """What to collect. ``env`` holds env keyword arguments (see ``sim.config.EnvConfig``)."""

    episodes: int = 20
    shapes: list[str] = field(default_factory=lambda: list(PEG_SHAPES))
    policies: dict[str, float] = field(
        default_factory=lambda: {"noisy_expert": 0.4, "random": 0.3, "contact_seeking": 0.3})
    policy_kwargs: dict[str, dict[str, Any]] = field(default_factory=dict)
    seed: int = 0
    out: str = "data/sim"
    workers: int | None = None  # None: all cores
    compression: str = "lzf"
    valid_fraction: float = 0.2
    env: dict[str, Any] = field(default_factory=lambda: {"max_steps": 100})

    def validate(self) -> None:
        if not isinstance(self.episodes, int) or self.episodes < 1:
            raise ValueError(f"episodes must be a positive int, got {self.episodes!r}")
        if not self.shapes or any(s not in PEG_SHAPES for s in self.shapes):
            raise ValueError(f"shapes must be a non-empty list of {PEG_SHAPES}, got {self.shapes!r}")
        unknown = [p for p in self.policies if p not in POLICIES]
        if unknown or not self.policies:
            raise ValueError(f"policies: unknown {unknown}; choose from {sorted(POLICIES)}")
        if any(w < 0 for w in self.policies.values()) or sum(self.policies.values()) <= 0:
            raise ValueError(f"policies weights must be >= 0 with a positive sum, got {self.policies!r}")
        if self.compression not in COMPRESSIONS:
            raise ValueError(f"compression must be one of {COMPRESSIONS}, got {self.compression!r}")
        if not 0.0 <= self.valid_fraction < 1.0:
            raise ValueError(f"valid_fraction must be in [0, 1), got {self.valid_fraction!r}")
        if self.workers is not None and (not isinstance(self.workers, int) or self.workers < 1):
            raise ValueError(f"workers must be a positive int or None, got {self.workers!r}")

    def env_kwargs(self, shape: str) -> dict[str, Any]:
        """Env arguments for one shape: flow and camera on (the training labels need them)."""
        return {"compute_flow": True, "use_camera": True, **self.env, "peg_shape": shape}


def plan_episode(cfg: CollectConfig, index: int) -> tuple[int, str, str]:
    """``(env seed, peg shape, policy name)`` of episode ``index``: a function of (seed, index) only."""
    rng = np.random.default_rng([cfg.seed, index])
    names = sorted(cfg.policies)
    weights = np.array([cfg.policies[n] for n in names], dtype=float)
    policy = names[int(rng.choice(len(names), p=weights / weights.sum()))]
    shape = cfg.shapes[index % len(cfg.shapes)]
    return int(rng.integers(0, 2**31 - 1)), shape, policy


def split_of(cfg: CollectConfig) -> dict[int, str]:
    """Episode index -> "train" or "valid": a seeded permutation of all planned episodes."""
    order = np.random.default_rng([cfg.seed, 7919]).permutation(cfg.episodes)
    n_valid = int(round(cfg.valid_fraction * cfg.episodes))
    valid = set(order[:n_valid].tolist())
    return {i: ("valid" if i in valid else "train") for i in range(cfg.episodes)}


def scan_shards(out: Path, quarantine: bool = False, wait: float = 10.0,
                locking: bool = True) -> dict[int, dict[str, Any]]:
    """Complete episodes in the shards of ``out``: index -> {shard, name, checksum, attrs...}.

    A shard still held by a writer (e.g. a worker orphaned by a killed run, which stops within a
    control step) is waited for up to ``wait`` seconds. With ``quarantine`` (the collector, which owns
    the folder), a shard that cannot be opened at all (a crash in the middle of a flush) is moved
    aside to ``*.corrupt-<time>`` with a warning and its episodes are collected again (they are
    deterministic); without it, the error propagates. ``locking=False`` peeks at shards that are
    being written (progress monitoring; what it sees may be a moment old).
    """
    found: dict[int, dict[str, Any]] = {}
    for shard in sorted(out.glob("shard_*.h5")):
        deadline = time.monotonic() + wait
        while True:
            try:
                found.update(_scan_shard(shard, locking))
                break
            except OSError as err:
                if "lock" in str(err) and time.monotonic() < deadline:
                    time.sleep(0.1)
                    continue
                if "lock" in str(err):
                    raise RuntimeError(f"shard {shard} is being written by another process") from err
                if not quarantine:
                    raise
                aside = shard.with_suffix(f".h5.corrupt-{int(time.time())}")
                shutil.move(shard, aside)
                warnings.warn(f"shard {shard} could not be read ({err}); moved to {aside.name}, its "
                              f"episodes will be collected again", stacklevel=2)
                break
    return found


def _scan_shard(shard: Path, locking: bool = True) -> dict[int, dict[str, Any]]:
    found = {}
    with h5py.File(shard, "r", locking=locking) as f:
        data = f.get(DATA_GROUP, {})
        for name in data:
            a = data[name].attrs
            if "checksum" not in a:
                continue  # partial: the next writer of this shard removes it
            found[int(a["index"])] = {
                "name": name, "shard": shard.name, "checksum": str(a["checksum"]),
                "num_steps": int(a["num_steps"]), "seed": int(a["seed"]),
                "peg_shape": str(a["peg_shape"]), "policy": str(a["policy"]),
                "success": bool(a["success"])}
    return found


def _make_env(cfg: CollectConfig, shape: str):
    import sim  # noqa: F401  (registers the ids in a fresh worker process)

    return gym.make(f"mmrep/PegInsertion{shape.capitalize()}-v0", **cfg.env_kwargs(shape))


def _collect_into(cfg: CollectConfig, indices, shard: Path, report, should_stop=None) -> None:
    """Record the episodes ``indices`` yields into ``shard``; ``report(index, steps, success)`` after
    each one."""
    envs: dict[str, Any] = {}
    try:
        with ShardWriter(shard, cfg.compression) as writer:
            for index in indices:
                seed, shape, policy_name = plan_episode(cfg, index)
                env = envs.get(shape) or envs.setdefault(shape, _make_env(cfg, shape))
                policy = make_policy(policy_name, env.unwrapped.cfg, **cfg.policy_kwargs.get(policy_name, {}))
                arrays, attrs = record_episode(env, policy, seed, should_stop=should_stop)
                writer.write(index, arrays, attrs, specs_for_env(env))
                report(index, attrs["num_steps"], attrs["success"])
    finally:
        for env in envs.values():
            env.close()


def _worker(worker: int, tasks, cfg_dict: dict, shard: str, q, parent: int) -> None:
    cfg = CollectConfig(**cfg_dict)

    def indices():  # pull episodes from the shared queue: long and short episodes balance out
        while (index := tasks.get()) is not None:
            yield index

    try:
        # Orphaned workers (the parent was killed) stop at the next step instead of writing on.
        _collect_into(cfg, indices(), Path(shard), lambda i, n, s: q.put(("episode", worker, i, n, s)),
                      should_stop=lambda: os.getppid() != parent)
        q.put(("done", worker, None, 0, False))
    except InterruptedError:
        pass
    except BaseException:  # report everything, including ShardWriteError, to the parent
        q.put(("error", worker, traceback.format_exc(), 0, False))


def collect(cfg: CollectConfig, progress: bool = True) -> dict[str, Any]:
    """Collect (or finish collecting) the dataset described by ``cfg``; return its manifest."""
    cfg.validate()
    out = Path(cfg.out)
    out.mkdir(parents=True, exist_ok=True)
    with open(out / ".collect.lock", "w") as lock:
        try:
            fcntl.flock(lock, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except OSError as err:
            raise RuntimeError(f"another collection is running into {out}") from err
        _check_same_config(out, cfg)
        (out / "collect_config.json").write_text(json.dumps(asdict(cfg), indent=2))
        done = scan_shards(out, quarantine=True)
        todo = [i for i in range(cfg.episodes) if i not in done]
        n_workers = min(cfg.workers or os.cpu_count() or 1, len(todo)) if todo else 0
        if todo:
            _run_workers(cfg, todo, n_workers, out, progress, resumed=len(done))
        return write_manifest(cfg, out)


def _check_same_config(out: Path, cfg: CollectConfig) -> None:
    """Resuming into a folder made with other settings would mix two datasets: refuse."""
    path = out / "collect_config.json"
    if not path.exists():
        return
    old = json.loads(path.read_text())
    new = asdict(cfg)
    keys = ("shapes", "policies", "policy_kwargs", "seed", "env", "compression")
    diff = [k for k in keys if old.get(k) != json.loads(json.dumps(new[k]))]
    if diff:
        raise ValueError(f"{out} holds a dataset collected with other settings ({', '.join(diff)} "
                         f"differ); use another output folder or the same settings to resume")


def _run_workers(cfg: CollectConfig, todo: list[int], n_workers: int, out: Path, progress: bool,
                 resumed: int) -> None:
    from tqdm import tqdm

    bar = tqdm(total=len(todo), unit="ep", desc=f"collect ({n_workers} workers)", disable=not progress
               or None, dynamic_ncols=True)
    if resumed:
        bar.write(f"resuming: {resumed} episodes already complete in {out}")
    start, steps = time.time(), 0

    def tick(index: int, n: int, success: bool) -> None:
        nonlocal steps
        steps += n
        bar.update()
        bar.set_postfix(steps=steps, steps_per_s=f"{steps / max(time.time() - start, 1e-9):.0f}")

    try:
        if n_workers == 1:
            _collect_into(cfg, todo, out / "shard_000.h5", tick)
            return
        ctx = mp.get_context("spawn")
        q, tasks = ctx.Queue(), ctx.Queue()
        # Long episodes first (exploration policies run to the step limit; experts usually stop
        # early on success), so the workers finish together instead of one idling at the end.
        for index in sorted(todo, key=lambda i: ("expert" in plan_episode(cfg, i)[2], i)):
            tasks.put(index)
        for _ in range(n_workers):
            tasks.put(None)
        procs = []
        for w in range(n_workers):
            proc = ctx.Process(target=_worker, args=(w, tasks, asdict(cfg), str(out / f"shard_{w:03d}.h5"),
                                                     q, os.getpid()), daemon=True)
            proc.start()
            procs.append(proc)
        running = set(range(n_workers))
        while running:
            try:
                kind, worker, payload, n, success = q.get(timeout=1.0)
            except queue_mod.Empty:
                dead = [w for w in running if not procs[w].is_alive() and procs[w].exitcode != 0]
                if dead:
                    raise RuntimeError(f"collection worker {dead[0]} died (exit code "
                                       f"{procs[dead[0]].exitcode})") from None
                continue
            if kind == "episode":
                tick(payload, n, success)
            elif kind == "done":
                running.discard(worker)
            else:
                for proc in procs:
                    proc.terminate()
                raise RuntimeError(f"collection worker {worker} failed:\n{payload}")
        for proc in procs:
            proc.join()
    finally:
        bar.close()


def write_manifest(cfg: CollectConfig, out: Path) -> dict[str, Any]:
    """Index the shards' complete episodes, write ``mask/*`` into each shard and the manifest
    atomically; return the manifest."""
    found = scan_shards(out)
    splits = split_of(cfg)
    episodes = []
    for index in sorted(found):
        e = found[index]
        split = splits.get(index, "train")
        episodes.append({"index": index, **e, "split": split})
    by_shard: dict[str, dict[str, list[str]]] = {}
    for e in episodes:
        by_shard.setdefault(e["shard"], {"train": [], "valid": []})[e["split"]].append(e["name"])
    for shard, masks in by_shard.items():
        with h5py.File(out / shard, "a") as f:
            mask = f.require_group("mask")
            for split, names in masks.items():
                if split in mask:
                    del mask[split]
                mask.create_dataset(split, data=np.array(names, dtype="S"))
    missing = [i for i in range(cfg.episodes) if i not in found]
    manifest = {
        "schema_version": SCHEMA_VERSION,
        "complete": not missing,
        "missing_episodes": missing,
        "config": asdict(cfg),
        "shards": sorted(by_shard),
        "episodes": episodes,
        "splits": {s: [e["name"] for e in episodes if e["split"] == s] for s in ("train", "valid")},
        "totals": {"episodes": len(episodes), "steps": sum(e["num_steps"] for e in episodes),
                   "successes": sum(e["success"] for e in episodes)},
    }
    tmp = out / (MANIFEST + ".tmp")
    tmp.write_text(json.dumps(manifest, indent=1))
    os.replace(tmp, out / MANIFEST)
    return manifest
