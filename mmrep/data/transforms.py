"""Dataset transforms that perturb samples with ``sim.perturb`` (training augmentation, evaluation).

A transform is called by ``MultimodalDataset`` on the numpy rows of a sample before they become
tensors: ``transform(sample, rng, time_s) -> sample`` with ``rgb`` (S, S, 3) uint8, ``depth``
(S, S, 1) m, ``force`` (n, 6), ``proprio`` (8,) PROPRIO8, and the alignment negatives ``force_neg``
and ``proprio_neg`` (perturbed like their positives, with their own draws: a faulty sensor is faulty
at every moment). ``rng`` is seeded by (seed, epoch, index), so a sample is perturbed the same way
whichever worker loads it; ``time_s`` is the step's time in the episode (drift).
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence

import numpy as np

from sim.perturb import PERTURBATIONS, SensorStats, Setting, check_level, get, perturb

NEGATIVE_KEYS = {"force": "force_neg", "proprio": "proprio_neg"}

# The training augmentation's default family: every perturbation that keeps the scene's geometry (the
# flow and end-effector targets are in the camera's frame, so rotation, flip and crop would contradict
# them).
ROBUST_PERTURBATIONS: tuple[str, ...] = tuple(
    n for n in PERTURBATIONS if n.split("/")[1] not in ("rotation", "flip", "crop", "multibench"))


def _apply(sample: dict, name: str, p: float, rng: np.random.Generator, stats: SensorStats,
           time_s: float) -> dict:
    key = get(name).key
    if key not in sample:
        return sample
    out = perturb(sample, name, p, rng, stats=stats, time_s=time_s, batched=False)
    neg = NEGATIVE_KEYS.get(key)
    if neg in sample:
        out[neg] = perturb({key: sample[neg]}, name, p, rng, stats=stats, time_s=time_s, batched=False)[key]
    return out


class Corrupt:
    """Every sample perturbed by the same ``settings`` (``Setting`` or ``"name:p"``): evaluation."""

    def __init__(self, settings: Iterable[Setting | str], stats: SensorStats | None = None) -> None:
        self.settings = [s if isinstance(s, Setting) else Setting.parse(s) for s in settings]
        self.stats = stats or SensorStats()

    def __call__(self, sample: dict, rng: np.random.Generator, time_s: float = 0.0) -> dict:
        for s in self.settings:
            sample = _apply(sample, s.name, s.p, rng, self.stats, time_s)
        return sample


class RandomCorruption:
    """Training augmentation: with probability ``prob`` a sample gets one perturbation drawn
    uniformly from ``names`` at a level drawn uniformly from [0, ``max_level``]."""

    def __init__(self, names: Sequence[str] = ROBUST_PERTURBATIONS, prob: float = 0.3, max_level: float = 0.9,
                 stats: SensorStats | None = None) -> None:
        if not names:
            raise ValueError("augment.perturbations must name at least one perturbation")
        for n in names:
            get(n)
        self.names = list(names)
        self.prob = check_level(prob, "augment.prob")
        self.max_level = check_level(max_level, "augment.max_level")
        self.stats = stats or SensorStats()

    def __call__(self, sample: dict, rng: np.random.Generator, time_s: float = 0.0) -> dict:
        if rng.random() >= self.prob:
            return sample
        name = self.names[int(rng.integers(len(self.names)))]
        return _apply(sample, name, float(rng.uniform(0.0, self.max_level)), rng, self.stats, time_s)
