"""The paper's reference dataset layout (its real-robot data ships this way): what it holds, and the
export of a native dataset to it (numpy and h5py, no torch).

One HDF5 file per 50-step chunk; every key has 50 rows of the shapes in ``REFERENCE_KEYS``.
``mmrep.data.sources.ReferenceSource`` reads it for training.
"""

from __future__ import annotations

import shutil
from pathlib import Path

import h5py
import numpy as np

from sim.dataset_format import DATA_GROUP, READ_ERRORS, UnreadableFileError, episode_groups, list_shards, open_shard
from sim.observation import action4_from_action, peg_yaw, proprio8_from_proprio13, yaw_quat

REFERENCE_KEYS = {
    "action": (4,), "contact": (50,), "depth_data": (128, 128, 1), "ee_forces_continuous": (50, 6),
    "ee_ori": (4,), "ee_pos": (3,), "ee_vel": (3,), "ee_vel_ori": (3,), "ee_yaw": (4,),
    "ee_yaw_delta": (4,), "image": (128, 128, 3), "joint_pos": (7,), "joint_vel": (7,),
    "optical_flow": (128, 128, 2), "proprio": (8,),
}
"""Every key of a reference-layout file and its row shape (50 rows each)."""

REQUIRED_REFERENCE_KEYS = ("image", "depth_data", "ee_forces_continuous", "proprio", "contact", "action",
                           "optical_flow")
"""The keys training reads; a file without them is not in the reference layout."""


def export_reference(path: str | Path, out: str | Path, window: int = 50) -> list[Path]:
    """Write a native dataset in the paper's layout: one file per ``window`` observation rows.

    Every key of ``REFERENCE_KEYS`` is written with ``window`` rows. Episodes are cut into whole
    windows (a tail shorter than a window is left out). ``proprio`` is mmrep's ``proprio8``;
    ``ee_yaw`` is the quaternion (x, y, z, w) of the yaw alone and ``ee_yaw_delta`` that of the yaw
    change to the next row; ``action`` row t is the action taken at t (zero yaw appended for 3-D
    actions; zero after the episode's last step). Needs 50 F/T readings per step (1 kHz physics).
    """
    path, out = Path(path), Path(out)
    if not path.exists():
        raise FileNotFoundError(f"dataset path {path} does not exist")
    created = not out.exists()
    out.mkdir(parents=True, exist_ok=True)
    written: list[Path] = []
    try:
        for shard in list_shards(path):
            with open_shard(shard) as f:
                for name in episode_groups(f):
                    try:
                        _export_episode(f[DATA_GROUP][name], f"{shard}:{name}",
                                        out / f"{shard.stem}_{name}", window, written)
                    except LayoutError:
                        raise
                    except READ_ERRORS as err:
                        raise UnreadableFileError(f"{shard}:{DATA_GROUP}/{name} cannot be read ({err}); run "
                                                  f"`mmrep data verify {path}`, repair the dataset (the same "
                                                  f"collect command) and export again") from None
    except BaseException:
        # Nothing half-exported: the files of this export go, and the folder if this export made it.
        for target in written:
            target.unlink(missing_ok=True)
        if created:
            shutil.rmtree(out, ignore_errors=True)
        raise
    return written


class LayoutError(ValueError):
    """A dataset that cannot be exported to the reference layout (not a damaged one)."""


def _export_episode(g: h5py.Group, where: str, stem: Path, window: int, written: list[Path]) -> list[Path]:
    """The reference-layout files of one episode group (each also appended to ``written`` before it is
    created, so a failure can remove it)."""
    if "obs/rgb" not in g or "flow" not in g:
        return []
    force = g["obs/force"][()]
    if force.shape[1] != 50:
        raise LayoutError(f"{where} has {force.shape[1]} F/T readings per step; the reference layout needs 50 "
                          f"(collect at physics_hz=1000)")
    arrays = _reference_arrays(g, force)
    rows = arrays["image"].shape[0]
    mine = []
    for k in range(rows // window):
        sl = slice(k * window, (k + 1) * window)
        target = stem.parent / f"{stem.name}_{k:03d}.h5"
        mine.append(target)
        written.append(target)
        with h5py.File(target, "w") as r:
            for key in REFERENCE_KEYS:
                r.create_dataset(key, data=arrays[key][sl])
    return mine


def _reference_arrays(g: h5py.Group, force: np.ndarray) -> dict[str, np.ndarray]:
    proprio = g["obs/proprio"][()]
    rows = proprio.shape[0]
    yaw = peg_yaw(proprio[:, 3:7])
    action = np.zeros((rows, 4), np.float32)
    action[: rows - 1] = action4_from_action(g["actions"][()])
    dyaw = np.append(np.diff(yaw), 0.0)

    flow = np.zeros((rows, *g["flow"].shape[1:]), np.float32)
    flow[: rows - 1] = g["flow"][()]
    return {
        "action": action, "contact": g["obs/contact"][()].astype(np.float32),
        "depth_data": g["obs/depth"][()].astype(np.float32), "ee_forces_continuous": force,
        "ee_ori": proprio[:, 3:7], "ee_pos": proprio[:, :3], "ee_vel": proprio[:, 7:10],
        "ee_vel_ori": proprio[:, 10:13], "ee_yaw": yaw_quat(yaw), "ee_yaw_delta": yaw_quat(dyaw),
        "image": g["obs/rgb"][()], "joint_pos": g["obs/joint_pos"][()], "joint_vel": g["obs/joint_vel"][()],
        "optical_flow": flow, "proprio": proprio8_from_proprio13(proprio),
    }
