"""Parallel, resumable dataset collection: worker processes, one PyBullet client and one shard each.

Episode ``i`` is fully determined by ``(seed, i)``: its peg shape, its policy (drawn from the
mixture) and its env seed. So a dataset does not depend on how many workers made it or how often
it was interrupted: a killed run, run again with the same command, collects only the missing
episodes and ends with the same per-episode checksums as an uninterrupted run.

Two backends run the workers: ``local`` (the default), worker processes on this machine, each writing
its own shard; and ``ray`` (``sim.collect_ray``), Ray actors anywhere on a cluster that send finished
episodes back to this process, which writes them (no shared filesystem needed). Both give the same
episodes, byte for byte.

The manifest (``manifest.json``) indexes shards, episodes, step counts, checksums and the
train/valid split (by episode); it is rebuilt from the shards' complete episodes at the end of
every run, so it never lists a partial episode. The same split is written into each shard as
robomimic-style ``mask/train`` and ``mask/valid`` (episode names).
"""

from __future__ import annotations

import json
import multiprocessing as mp
import os
import queue as queue_mod
import shutil
import sys
import traceback
from pathlib import Path
from typing import Any

from sim.collection import (  # noqa: F401  (defined there; importable from here as before)
    BACKENDS,
    COLLECT_ENV_DEFAULTS,
    DEFAULT_POLICY_MIXTURE,
    CollectConfig,
    EpisodeRecorder,
    Progress,
    dispatch_order,
    plan_episode,
)
from sim.config import EnvConfig
from sim.dataset_format import COLLECT_CONFIG, scan_shards, shard_name, write_manifest
from sim.recording import ShardWriteError, ShardWriter
from sim.run_lock import run_lock


def _collect_into(cfg: CollectConfig, indices, shard: Path, report, should_stop=None) -> None:
    """Record the episodes ``indices`` yields into ``shard``; ``report(index, steps, success)`` after
    each one."""
    recorder = EpisodeRecorder(cfg)
    try:
        with ShardWriter(shard, cfg.compression) as writer:
            for index in indices:
                arrays, attrs, specs = recorder.record(index, should_stop=should_stop)
                writer.write(index, arrays, attrs, specs)
                report(index, attrs["num_steps"], attrs["success"])
    finally:
        recorder.close()


def _worker(worker: int, tasks, cfg: CollectConfig, shard: str, q, parent: int) -> None:
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
    except ShardWriteError as err:  # disk full and the like: one line that names the file
        q.put(("error", worker, str(err), 0, False))
        q.close()
        q.join_thread()
        # HDF5 after a failed write can crash or write more while it tears down: leave without it.
        os._exit(3)
    except KeyboardInterrupt:
        pass  # Ctrl-C reaches every process of the group; the parent reports it
    except BaseException:  # report everything else to the parent
        q.put(("error", worker, traceback.format_exc(), 0, False))


def collect(cfg: CollectConfig, progress: bool | None = None) -> dict[str, Any]:
    """Collect (or finish collecting) the dataset described by ``cfg``; return its manifest.
    ``progress`` (default ``cfg.progress``) shows a progress bar."""
    cfg.validate()
    progress = cfg.progress if progress is None else progress
    with run_lock(cfg.out, "collect") as out:
        _check_same_config(out, cfg)
        done = scan_shards(out, quarantine=True)
        # A smaller ``episodes`` than the folder already holds shrinks nothing (its episodes are kept and
        # indexed): the config recorded says how many the dataset has, not the smaller number asked.
        record = {**cfg.to_dict(), "episodes": max(cfg.episodes, max(done, default=-1) + 1)}
        if record["episodes"] > cfg.episodes:
            print(f"{out} already holds episodes up to index {record['episodes'] - 1}: none is removed, "
                  f"and the dataset stays planned at {record['episodes']} episodes, not {cfg.episodes}",
                  file=sys.stderr)
        (out / COLLECT_CONFIG).write_text(json.dumps(record, indent=2))
        todo = [i for i in range(cfg.episodes) if i not in done]
        n_workers = min(cfg.workers or os.cpu_count() or 1, len(todo)) if todo else 0
        try:
            if todo and cfg.backend == "ray":
                from sim.collect_ray import collect_on_ray

                collect_on_ray(cfg, todo, out, resumed=len(done), progress=progress)
            elif todo:
                _run_workers(cfg, todo, n_workers, out, progress, resumed=len(done))
        except KeyboardInterrupt:
            raise CollectionInterrupted(f"interrupted: the complete episodes in {out} are kept; run the "
                                        f"same command to collect the rest") from None
        return write_manifest(out, record, record["episodes"], cfg.valid_fraction, cfg.seed)


class CollectionInterrupted(RuntimeError):
    """Ctrl-C during a collection: what was complete is kept, the same command resumes."""


def _check_same_config(out: Path, cfg: CollectConfig) -> None:
    """Resuming into a folder made with other settings would mix two datasets: refuse."""
    path = out / COLLECT_CONFIG
    if not path.exists():
        return
    old = json.loads(path.read_text())
    if "env" in old:
        # Options added since the folder was written take their defaults (every new option is off
        # by default, as the old code was); a file from before the env section was typed lists
        # only what differed from collection's defaults.
        base = {**COLLECT_ENV_DEFAULTS, "use_camera": True} if "image_size" not in old["env"] else {}
        env = EnvConfig.from_kwargs(**{**base, **old["env"]})
        old["env"] = json.loads(json.dumps(env.to_dict()))
    new = cfg.to_dict()
    keys = ("shapes", "policies", "policy_kwargs", "seed", "env", "compression")
    diff = [k for k in keys if old.get(k) != new[k]]
    if diff:
        raise ValueError(f"{out} holds a dataset collected with other settings ({', '.join(diff)} "
                         f"differ); use another output folder or the same settings to resume")


def _run_workers(cfg: CollectConfig, todo: list[int], n_workers: int, out: Path, progress: bool,
                 resumed: int) -> None:
    bar = Progress(len(todo), n_workers, "local", out, progress, resumed)
    tick = bar.tick
    try:
        if n_workers == 1:
            _collect_into(cfg, todo, out / shard_name(0), tick)
            return
        ctx = mp.get_context("spawn")
        q, tasks = ctx.Queue(), ctx.Queue()
        for index in dispatch_order(cfg, todo):
            tasks.put(index)
        for _ in range(n_workers):
            tasks.put(None)
        procs = []
        for w in range(n_workers):
            proc = ctx.Process(target=_worker, args=(w, tasks, cfg, str(out / shard_name(w)),
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
                    free = shutil.disk_usage(out).free
                    hint = f"; the disk is full ({free / 2**20:.1f} MiB free in {out})" if free < 2**21 else ""
                    raise RuntimeError(f"collection worker {dead[0]} died (exit code "
                                       f"{procs[dead[0]].exitcode}){hint}") from None
                continue
            if kind == "episode":
                tick(payload, n, success)
            elif kind == "done":
                running.discard(worker)
            else:
                for proc in procs:
                    proc.terminate()
                sep = " " if "\n" not in payload.strip() else "\n"
                raise RuntimeError(f"collection worker {worker} failed:{sep}{payload.strip()}")
        for proc in procs:
            proc.join()
    finally:
        bar.close()
