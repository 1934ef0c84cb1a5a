"""Training on a LeRobot dataset: its episodes read through LeRobot's loader under mmrep's vocabulary.

``LeRobotSource`` is an episode source like ``mmrep.data.sources.SimSource`` (rgb, depth, force, flow,
proprio8, contact, actions; see that module), built from a LeRobot dataset folder and a key mapping
(``LeRobotKeys``, the ``lerobot`` section of ``mmrep train``'s config). What a foreign dataset does not have:

    flow     exact optical flow needs the simulator: without a ``flow`` key the flow head cannot train
             (``model.flow=false``); ``check_heads`` refuses a config that would train it on zeros
    contact  derived from the force when there is no ``contact`` key: a reading is "in contact" when its
             force magnitude exceeds ``contact_threshold`` N (the sensor is tared)
    force    a ``(n, 6)`` window per frame is used as it is; a ``(6,)`` wrench per frame becomes a window of
             the last ``force_window`` frames (the first frame repeated before the episode starts)
    depth    a modality the dataset lacks must be left out of ``model.modalities``

Images come back as uint8 HWC: exactly for LeRobot ``image`` features (PNG), within the video codec's
error for ``video`` features (decoded by LeRobot's own video backend).
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np

from mmrep.config import LeRobotKeys
from mmrep.data.sources import Episode, _Source
from sim.observation import action4_from_action, proprio8_from_proprio13


def is_lerobot_folder(path: str | Path) -> bool:
    return (Path(path) / "meta" / "info.json").exists()


class LeRobotSource(_Source):
    """Episodes of a LeRobot dataset folder (opened offline with LeRobot's ``LeRobotDataset``).

    ``split``: "train" / "valid" from ``meta/info.json``'s ``splits`` (episode ranges), None for all; a
    dataset with only a "train" range is split by a seeded permutation of its episodes
    (seed 0, ``valid_fraction``; at least one valid episode when there are two or more), the same for
    every run.
    """

    kind = "lerobot"

    def __init__(self, path: str | Path, split: str | None = None, keys: LeRobotKeys | dict | None = None,
                 seed: int = 0, valid_fraction: float = 0.2) -> None:
        from mmrep.formats.lerobot import open_lerobot
        from sim.dataset_format import split_of

        keys = LeRobotKeys(**keys) if isinstance(keys, dict) else (keys or LeRobotKeys())
        keys.validate()
        self.keys, self.path = keys, Path(path)
        self.ds = open_lerobot(path, keys.repo_id)
        self.features = self.ds.meta.features
        for name in ("rgb", "depth", "force", "proprio", "action", "contact", "flow"):
            key = getattr(keys, name)
            if key is not None and key not in self.features:
                if name in ("contact", "flow", "depth", "rgb"):
                    setattr(keys, name, None)  # optional inputs and labels: absent here
                    continue
                raise ValueError(f"{path}: no feature {key!r} for lerobot.{name} (features: {sorted(self.features)})")
        self.table = self.ds.hf_dataset.with_format("numpy")
        self._columns: dict = {}  # one single-column view per feature: a row read decodes only that column
        info = json.loads((self.path / "meta" / "info.json").read_text())
        n_eps = self.ds.meta.total_episodes
        ranges = {s: range(*map(int, r.split(":"))) for s, r in info.get("splits", {}).items()}
        if split is None:
            chosen = list(range(n_eps))
        elif "valid" in ranges:
            chosen = [e for e in ranges.get(split, []) if e < n_eps]
        else:
            chosen = [e for e, s in zip(range(n_eps), split_of(n_eps, seed, valid_fraction, at_least_one=True))
                      if s == split]
        eps = self.ds.meta.episodes
        self.episodes = [Episode(self.path, str(e), int(eps[e]["dataset_to_index"] - eps[e]["dataset_from_index"]),
                                 f"episode_{e}") for e in chosen]
        self._start = {str(e): int(eps[e]["dataset_from_index"]) for e in chosen}

    @property
    def modalities(self) -> list[str]:
        """The model inputs this dataset has."""
        return [m for m in ("rgb", "depth", "force") if getattr(self.keys, m)] + ["proprio"]

    @property
    def labels(self) -> dict[str, str]:
        """Where each label comes from: measured (a feature), derived, or absent."""
        return {"flow": "measured" if self.keys.flow else "absent",
                "contact": "measured" if self.keys.contact else f"derived (|F| > {self.keys.contact_threshold} N)"}

    def _view(self, key: str):
        view = self._columns.get(key)
        if view is None:
            view = self._columns[key] = self.table.select_columns([key])
        return view

    def _column(self, ep: Episode, key: str, rows: int | slice) -> np.ndarray:
        start = self._start[ep.group]
        if isinstance(rows, slice):
            lo, hi, _ = rows.indices(ep.num_obs)
            if self.features[key]["dtype"] == "video":
                return np.stack([self._video(start + i, key) for i in range(lo, hi)])
            return np.asarray(self._view(key)[start + lo:start + hi][key])
        if self.features[key]["dtype"] == "video":
            return self._video(start + rows, key)
        return np.asarray(self._view(key)[start + rows][key])

    def _video(self, index: int, key: str) -> np.ndarray:
        frame = self.ds[index][key].numpy()  # float CHW in [0, 1], decoded by LeRobot's backend
        return np.round(frame * 255).astype(np.uint8).transpose(1, 2, 0)

    def _force(self, ep: Episode, rows: int | slice) -> np.ndarray:
        key = self.keys.force
        if len(self.features[key]["shape"]) == 2:
            return self._column(ep, key, rows).astype(np.float32)
        wrench = self._column(ep, key, slice(None)).astype(np.float32).reshape(ep.num_obs, 6)
        w = self.keys.force_window
        padded = np.concatenate([np.repeat(wrench[:1], w - 1, axis=0), wrench])
        windows = np.stack([padded[t:t + w] for t in range(ep.num_obs)])  # (T, w, 6), oldest first
        return windows[rows]

    def _raw(self, ep: Episode, key: str, rows: int | slice) -> np.ndarray:
        k = self.keys
        if key in ("rgb", "depth") and not getattr(k, key):  # absent: zeros, and check_heads keeps it out
            channels, dtype = (3, np.uint8) if key == "rgb" else (1, np.float32)
            return np.zeros((*self._lead(ep, rows), self.image_size, self.image_size, channels), dtype)
        if key == "rgb":
            img = self._column(ep, k.rgb, rows)
            return img if img.shape[-1] == 3 else np.moveaxis(img, -3, -1)
        if key == "depth":
            return self._column(ep, k.depth, rows).astype(np.float32)
        if key == "force":
            if not k.force:
                raise KeyError(f"{self.path} has no force feature (lerobot.force)")
            return self._force(ep, rows)
        if key == "proprio8":
            p = self._column(ep, k.proprio, rows).astype(np.float32)
            return proprio8_from_proprio13(p) if k.proprio_layout == "proprio13" else p[..., :8]
        if key == "actions":
            a = self._column(ep, k.action, rows).astype(np.float32)
            return action4_from_action(a)
        if key == "contact":
            if k.contact:
                c = np.asarray(self._column(ep, k.contact, rows)).astype(np.int8)
                return c.reshape(*self._lead(ep, rows), -1)
            f = self._force(ep, rows)
            return (np.linalg.norm(f[..., :3], axis=-1) > k.contact_threshold).astype(np.int8)
        if key == "flow":
            if not k.flow:  # no exact flow: zeros, and check_heads keeps the flow head off
                return np.zeros((*self._lead(ep, rows), self.image_size, self.image_size, 2), np.float32)
            return self._column(ep, k.flow, rows).astype(np.float32)
        raise KeyError(key)

    @staticmethod
    def _lead(ep: Episode, rows: int | slice) -> tuple[int, ...]:
        return (len(range(*rows.indices(ep.num_obs))),) if isinstance(rows, slice) else ()

    @property
    def image_size(self) -> int:
        if self.keys.rgb:
            shape = self.features[self.keys.rgb]["shape"]
            names = self.features[self.keys.rgb].get("names") or []
            return int(shape[1] if names and names[0] == "channels" else shape[0])
        return 64


def check_heads(model_cfg, source: LeRobotSource, path: str | Path) -> None:
    """Refuse a model config whose inputs or heads this LeRobot dataset cannot feed: the message names the
    field to set. The flow head needs exact flow (the simulator's); contact may be derived."""
    missing = [m for m in model_cfg.modalities if m not in source.modalities]
    if missing:
        raise ValueError(f"{path} has no {missing[0]} feature for the model's {missing[0]} encoder: map one "
                         f"(lerobot.{missing[0]}=<feature>) or leave it out (model.{missing[0]}=false)")
    if model_cfg.flow and not source.keys.flow:
        raise ValueError(f"{path} has no exact optical flow (it needs the simulator): the flow head cannot train; "
                         f"set model.flow=false (model=no_flow) or map a flow feature (lerobot.flow=<feature>)")
    if model_cfg.alignment and not ({"force", "proprio"} & set(model_cfg.modalities)):
        raise ValueError("the alignment head needs F/T or proprioception: set model.alignment=false")
