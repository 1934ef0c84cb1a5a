"""``MultimodalDataset``: (t, t+1) training samples with alignment negatives, as torch tensors.

One sample (``__getitem__``), shapes for a 128x128 camera and 50 F/T readings per step:

    rgb          (3, 128, 128) uint8     image at t, CHW (the model scales it)
    depth        (1, 128, 128) float32   metres, at t
    force        (50, 6)       float32   F/T readings of the step that ended at t (N, N m)
    proprio      (8,)          float32   ``proprio8`` at t (see ``mmrep.data.sources``)
    action       (4,)          float32   action taken at t
    flow         (2, 128, 128) float32   exact optical flow t -> t+1, pixels
    flow_mask    (1, 128, 128) float32   1 where the flow is non-zero (pixels that move)
    contact_next (1,)          float32   1 if the peg touches the block during step t+1
    contact_now  (1,)          float32   the same for step t (the "contact stays" baseline)
    ee_next      (4,)          float32   end-effector position (m) and yaw (rad) at t+1
    force_neg    (50, 6)       float32   F/T from another moment: the alignment negative
    proprio_neg  (8,)          float32   proprioception from that same other moment
    neg_kind     ()            int64     0: same episode, shifted in time; 1: another episode
    insertion_offset (2,)      float32   m, from the tip at t to where this episode's peg went into the
                                         hole (``mmrep.data.hindsight``); zeros where it never did
    insertion_known  (1,)      float32   1 if the episode has that point, else 0
    valid        ()            float32   1; 0 for a sample with NaN/inf inputs (``skip_nonfinite``)

Alignment negatives are time-shifted (at least ``min_shift`` steps away, ICRA version) or
cross-episode with the end-effector at least ``min_ee_distance`` metres away (the reference code's
rule), mixed with probability ``cross_episode_prob``. They are drawn from a generator seeded by
``(seed, epoch, index)``, so a sample does not depend on which DataLoader worker loads it.

Non-finite inputs (NaN, inf) are refused with ``NonFiniteDataError`` naming the file, episode, key and
step; with ``skip_nonfinite=True`` such a sample comes back zero-filled with ``valid`` 0, and the
trainer drops and counts it.

The small per-step arrays (proprio8, contact, actions) of every episode are loaded once at
construction; images, depth, flow and F/T are read per sample (single rows), or from a RAM cache
with ``cache=True`` (filled lazily, per process).
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import torch
from torch.utils.data import Dataset

from mmrep.data.sources import DataReadError, Episode, ReferenceSource, SimSource
from sim.dataset_format import SPLITS, is_dataset_folder, is_native_shard, split_of
from sim.modalities import MODALITIES, MODALITY_REGISTRY, to_model_inputs
from sim.perturb import SensorStats
from sim.task import DEFAULT_TASK, hindsight_label

STEP_SECONDS = 0.05  # s per control step (20 Hz), the time base of a transform's drift
FLOAT_KEYS = ("depth", "force", "proprio", "action", "flow", "ee_next", "force_neg", "proprio_neg",
              "insertion_offset")


class NonFiniteDataError(ValueError):
    """A sample holds NaN or inf; the message names the file, episode, key and step."""


def open_source(path: str | Path, split: str | None = None, lerobot=None):
    """A SimSource for a native dataset folder or shard, a LeRobotSource for a LeRobot dataset folder
    (``lerobot``: its key mapping, ``mmrep.config.LeRobotKeys``), a ReferenceSource for reference-layout
    files (a folder of them, or one file), decided by what is there."""
    path = Path(path)
    if not path.exists():
        raise FileNotFoundError(f"dataset path {path} does not exist")
    if (path / "meta" / "info.json").exists():
        from mmrep.formats.lerobot_source import LeRobotSource

        return LeRobotSource(path, split, lerobot)
    if is_dataset_folder(path) or (path.is_file() and is_native_shard(path)):
        return SimSource(path, split)
    return ReferenceSource(path)


class MultimodalDataset(Dataset):
    """Training samples from a native dataset folder/shard or reference-layout files.

    Args:
        path: dataset folder (with ``manifest.json``), a shard, or reference files / folder.
        split: "train", "valid" or None (all). Native data use the manifest's split; reference files
            are split by a seeded permutation of files (``valid_fraction``).
        seed: seeds the negatives (and the reference split).
        cross_episode_prob: probability that a negative comes from another episode.
        min_ee_distance: m, how far the other episode's end-effector must be (falls back to the
            farthest of ``max_tries`` candidates).
        min_shift: steps, how far a time-shifted negative must be from t.
        cache: keep every array in RAM after first use (small datasets).
        skip_nonfinite: return samples with NaN/inf inputs zero-filled with ``valid`` 0 instead of
            raising ``NonFiniteDataError``.
        transform: perturbs each sample's numpy rows before they become tensors
            (``mmrep.data.transforms``: ``RandomCorruption`` for training, ``Corrupt`` for evaluation),
            called as ``transform(rows, rng, time_s)`` with ``rng`` seeded by (seed, epoch, index).
        lerobot: the key mapping of a LeRobot dataset folder (``mmrep.config.LeRobotKeys`` or a dict).
        extra_modalities: plug-in modalities (``sim.modalities``, with ``recorded`` arrays) read too.
        task: the ``sim.task`` name of the task the episodes were collected in: its hindsight label
            gives ``insertion_offset``.
    """

    def __init__(self, path: str | Path, split: str | None = "train", seed: int = 0,
                 cross_episode_prob: float = 0.5, min_ee_distance: float = 0.06, min_shift: int = 5,
                 cache: bool = False, valid_fraction: float = 0.2, max_tries: int = 8,
                 skip_nonfinite: bool = False, transform=None, lerobot=None, task: str = DEFAULT_TASK,
                 extra_modalities: tuple[str, ...] = ()) -> None:
        if not 0.0 <= cross_episode_prob <= 1.0:
            raise ValueError(f"cross_episode_prob must be in [0, 1], got {cross_episode_prob!r}")
        if min_shift < 1:
            raise ValueError(f"min_shift must be >= 1, got {min_shift!r}")
        source = open_source(path, split if not _is_reference(path) else None, lerobot=lerobot)
        episodes = source.episodes
        if isinstance(source, ReferenceSource) and split is not None:
            episodes = _split_files(episodes, split, seed, valid_fraction)
        episodes = [e for e in episodes if e.num_obs >= 2]
        if not episodes:
            raise ValueError(f"{path} (split {split!r}) holds no episode with a transition")
        self.source = source
        self.episodes: list[Episode] = episodes
        self.seed = seed
        self.epoch = 0
        self.cross_episode_prob = cross_episode_prob
        self.min_ee_distance = min_ee_distance
        self.min_shift = min_shift
        self.max_tries = max_tries
        self.cache = cache
        self.skip_nonfinite = skip_nonfinite
        self.transform = transform
        self.extra_modalities = tuple(extra_modalities)
        for key in self.extra_modalities:  # a missing array fails here, naming it, not at the first sample
            try:
                source.read(episodes[0], key, slice(0, 1))
            except (DataReadError, KeyError) as err:
                raise ValueError(f"{path} does not hold the plug-in modality {key!r} ({err}); record it when "
                                 f"collecting: env.extra_observations=[{key}] with its plug-in in "
                                 f"env.plugins") from None
        self._cache: dict[tuple[int, str], np.ndarray] = {}
        # Small arrays of every episode, loaded once: they decide negatives and labels cheaply.
        self.proprio = [source.read(e, "proprio8", slice(None)) for e in episodes]
        self.contact_any = [source.read(e, "contact", slice(None)).any(axis=-1) for e in episodes]
        self.actions = [source.read(e, "actions", slice(None)) for e in episodes]
        label = hindsight_label(task)  # the task's hindsight label (peg in hole: where the peg went in)
        self.insertion = [label(p, c) if label else None for p, c in zip(self.proprio, self.contact_any)]
        if not skip_nonfinite:  # the small arrays are all in memory: check them now, not mid-epoch
            for e, proprio, actions in zip(episodes, self.proprio, self.actions):
                for key, arr in (("proprio", proprio), ("actions", actions)):
                    bad = np.flatnonzero(~np.isfinite(arr.reshape(len(arr), -1)).all(axis=1))
                    if len(bad):
                        where = f"{e.file}" + (f":{e.group}" if e.group else "")
                        raise NonFiniteDataError(f"NaN or inf in {key!r} of {where} at step(s) "
                                                 f"{bad[:5].tolist()}; fix the data, or set "
                                                 f"skip_nonfinite=true (mmrep train) to skip such samples")
        counts = np.array([e.num_obs - 1 for e in episodes])
        self._offsets = np.concatenate([[0], np.cumsum(counts)])

    def __len__(self) -> int:
        return int(self._offsets[-1])

    def sensor_stats(self, max_episodes: int = 64) -> SensorStats:
        """Per-channel standard deviations of F/T (over the readings of up to ``max_episodes``
        episodes, evenly spread) and of PROPRIO8 (every step): the scale of the perturbations."""
        pick = np.unique(np.linspace(0, len(self.episodes) - 1, min(max_episodes, len(self.episodes))).astype(int))
        force = np.concatenate([self.source.read(self.episodes[i], "force", slice(None)).reshape(-1, 6)
                                for i in pick])
        proprio = np.concatenate(self.proprio)
        return SensorStats.from_arrays(force[np.isfinite(force).all(1)], proprio[np.isfinite(proprio).all(1)])

    def set_epoch(self, epoch: int) -> None:
        """Draw new negatives for the next epoch (call before iterating, like a DistributedSampler)."""
        self.epoch = int(epoch)

    def locate(self, index: int) -> tuple[int, int]:
        """(episode number, t) of sample ``index``."""
        if not 0 <= index < len(self):
            raise IndexError(f"sample {index} out of range [0, {len(self)})")
        ep = int(np.searchsorted(self._offsets, index, side="right") - 1)
        return ep, int(index - self._offsets[ep])

    def index_of(self, ep: int, t: int) -> int:
        """Sample index of transition ``t`` of episode number ``ep`` (the inverse of ``locate``)."""
        if not 0 <= t < self.episodes[ep].num_obs - 1:
            raise IndexError(f"step {t} out of range for episode {ep} ({self.episodes[ep].num_obs - 1} transitions)")
        return int(self._offsets[ep] + t)

    def negative_of(self, index: int) -> tuple[int, int, int]:
        """(episode number, t', kind) of sample ``index``'s alignment negative in the current epoch;
        kind 0: same episode shifted in time, 1: another episode."""
        ep, t = self.locate(index)
        return self._negative(ep, t, np.random.default_rng([self.seed, self.epoch, index]))

    def _row(self, ep: int, key: str, t: int) -> np.ndarray:
        if not self.cache:
            return self.source.read(self.episodes[ep], key, t)
        arr = self._cache.get((ep, key))
        if arr is None:
            arr = self._cache[(ep, key)] = self.source.read(self.episodes[ep], key, slice(None))
        return arr[t]

    def _negative(self, ep: int, t: int, rng: np.random.Generator) -> tuple[int, int, int]:
        """(episode, t', kind) of the alignment negative for sample (ep, t)."""
        n_obs = self.episodes[ep].num_obs - 1
        if len(self.episodes) > 1 and rng.random() < self.cross_episode_prob:
            here = self.proprio[ep][t, :3]
            best, best_d = None, -1.0
            for _ in range(self.max_tries):
                other = int(rng.integers(len(self.episodes) - 1))
                other += other >= ep
                t2 = int(rng.integers(self.episodes[other].num_obs - 1))
                d = float(np.linalg.norm(self.proprio[other][t2, :3] - here))
                if d > best_d:
                    best, best_d = (other, t2), d
                if d >= self.min_ee_distance:
                    break
            return best[0], best[1], 1
        far = [s for s in range(n_obs) if abs(s - t) >= self.min_shift]
        if not far:  # a very short episode: take the farthest step
            far = [0 if t >= n_obs / 2 else n_obs - 1]
        return ep, int(far[int(rng.integers(len(far)))]), 0

    def __getitem__(self, index: int) -> dict[str, torch.Tensor]:
        ep, t = self.locate(index)
        neg_ep, neg_t, kind = self.negative_of(index)
        rows = {"rgb": self._row(ep, "rgb", t), "depth": self._row(ep, "depth", t),
                "force": np.asarray(self._row(ep, "force", t), dtype=np.float32),
                "proprio": self.proprio[ep][t].astype(np.float32),
                "force_neg": np.asarray(self._row(neg_ep, "force", neg_t), dtype=np.float32),
                "proprio_neg": self.proprio[neg_ep][neg_t].astype(np.float32)}
        for m in self.extra_modalities:  # plug-in modalities; a sensor's negative from the same other moment
            rows[m] = self._row(ep, m, t)
            if not MODALITY_REGISTRY[m].camera:
                rows[f"{m}_neg"] = self._row(neg_ep, m, neg_t)
        if self.transform is not None:
            rows = self.transform(rows, np.random.default_rng([self.seed, self.epoch, index, 1]),
                                  t * STEP_SECONDS)
        flow = self._row(ep, "flow", t)
        # the one env-to-model conversion (sim.modalities): CHW images, float32 sensors
        inputs = to_model_inputs(rows, MODALITIES + self.extra_modalities)
        inputs.update({k: to_model_inputs({m: rows[k]})[m] for m in self.extra_modalities
                       if (k := f"{m}_neg") in rows})
        sample = {m: torch.from_numpy(np.ascontiguousarray(x)) for m, x in inputs.items()}
        sample.update({
            "action": torch.from_numpy(self.actions[ep][t].astype(np.float32)),
            "flow": torch.from_numpy(np.ascontiguousarray(flow.transpose(2, 0, 1), dtype=np.float32)),
            "contact_next": torch.tensor([float(self.contact_any[ep][t + 1])]),
            "contact_now": torch.tensor([float(self.contact_any[ep][t])]),
            "ee_next": torch.from_numpy(self.proprio[ep][t + 1, :4].astype(np.float32)),
            "force_neg": torch.from_numpy(np.asarray(rows["force_neg"], dtype=np.float32)),
            "proprio_neg": torch.from_numpy(np.asarray(rows["proprio_neg"], dtype=np.float32)),
            "neg_kind": torch.tensor(kind, dtype=torch.int64),
        })
        point = self.insertion[ep]
        offset = np.zeros(2, np.float32) if point is None else point - self.proprio[ep][t, :2]
        sample["insertion_offset"] = torch.from_numpy(offset.astype(np.float32))
        sample["insertion_known"] = torch.tensor([float(point is not None)])
        sample["flow_mask"] = (sample["flow"].abs().sum(0, keepdim=True) > 0).float()
        sample["valid"] = torch.tensor(1.0)
        # One sum per array finds any NaN or inf (they propagate) at a fraction of the cost of an
        # element-wise check; the exact per-element check only runs on a hit.
        for key in FLOAT_KEYS:
            if np.isfinite(sample[key].numpy().sum()):
                continue
            finite = torch.isfinite(sample[key])
            if finite.all():  # the sum overflowed on finite values
                continue
            if not self.skip_nonfinite:
                e, step = (self.episodes[neg_ep], neg_t) if key.endswith("_neg") else (self.episodes[ep], t)
                where = f"{e.file}" + (f":{e.group}" if e.group else "")
                raise NonFiniteDataError(f"NaN or inf in {key!r} of {where} at step {step} (sample {index}); "
                                         f"fix the data, or set skip_nonfinite=true (mmrep train) to skip such samples")
            sample[key] = torch.where(finite, sample[key], torch.zeros_like(sample[key]))
            sample["valid"] = torch.tensor(0.0)
        if not bool(sample["valid"]):
            sample["flow_mask"] = (sample["flow"].abs().sum(0, keepdim=True) > 0).float()
        return sample


def _is_reference(path) -> bool:
    path = Path(path)
    if is_dataset_folder(path) or (path / "meta" / "info.json").exists():  # native or LeRobot
        return False
    return not (path.is_file() and path.suffix == ".h5" and is_native_shard(path))


def _split_files(episodes: list[Episode], split: str, seed: int, valid_fraction: float) -> list[Episode]:
    if split not in SPLITS:
        raise ValueError(f"split must be one of {SPLITS} or None, got {split!r}")
    splits = split_of(len(episodes), seed, valid_fraction, at_least_one=True)
    return [e for e, s in zip(episodes, splits) if s == split]
