"""The paper's reference dataset layout (its real-robot data ships this way): what it holds, and the
export of a native dataset to it (numpy and h5py, no torch).

One HDF5 file per 50-step chunk; every key has 50 rows of the shapes in ``REFERENCE_KEYS``.
``mmrep.data.sources.ReferenceSource`` reads it for training.
"""

from __future__ import annotations

import re
import shutil
from pathlib import Path

import h5py
import numpy as np

from sim.dataset_format import (
    DATA_GROUP,
    MANIFEST,
    READ_ERRORS,
    REPAIR_ADVICE,
    SHARD_GLOB,
    UnreadableFileError,
    episode_groups,
    list_shards,
    open_shard,
)
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

NATIVE_SHARD = re.compile(r"shard_\d+\.h5")
"""The name of a native dataset's shard (``sim.dataset_format.shard_name``), not of a reference file."""


def export_reference(path: str | Path, out: str | Path, window: int = 50) -> list[Path]:
    """Write a native dataset in the paper's layout: one file per ``window`` observation rows.

    Every key of ``REFERENCE_KEYS`` is written with ``window`` rows. Episodes are cut into whole
    windows (a tail shorter than a window is left out). ``proprio`` is mmrep's ``proprio8``;
    ``ee_yaw`` is the quaternion (x, y, z, w) of the yaw alone and ``ee_yaw_delta`` that of the yaw
    change to the next row; ``action`` row t is the action taken at t (zero yaw appended for 3-D
    actions; zero after the episode's last step). Needs 50 F/T readings per step (1 kHz physics).

    Raises ``LayoutError`` (nothing written) where ``out`` is the dataset folder or holds a dataset
    (shards or a manifest: the files written here, ``shard_..._ep_..._000.h5``, would be taken for its
    shards), and where nothing would be written (no shard, or no episode with camera images and flow
    that is ``window`` rows long).
    """
    path, out = Path(path), Path(out)
    if not path.exists():
        raise FileNotFoundError(f"dataset path {path} does not exist")
    _check_out(path, out)
    created = not out.exists()
    out.mkdir(parents=True, exist_ok=True)
    written: list[Path] = []
    episodes = without_images = 0
    try:
        shards = list_shards(path)
        for shard in shards:
            with open_shard(shard) as f:
                for name in episode_groups(f):
                    episodes += 1
                    try:
                        g = f[DATA_GROUP][name]
                        if "obs/rgb" not in g or "flow" not in g:
                            without_images += 1
                            continue
                        _export_episode(g, f"{shard}:{name}", out / f"{shard.stem}_{name}", window, written)
                    except LayoutError:
                        raise
                    except READ_ERRORS as err:
                        raise UnreadableFileError(f"{shard}:{DATA_GROUP}/{name} cannot be read ({err}); run "
                                                  f"`mmrep data verify {path}`, repair the dataset and export "
                                                  f"again ({REPAIR_ADVICE})") from None
        if not written:
            if not shards:
                why = f"it has no {SHARD_GLOB} files"
            elif not episodes:
                why = "its shards hold no episodes"
            else:
                why = (f"of its {episodes} episode(s), {without_images} have no camera images or flow and the "
                       f"rest are shorter than {window} steps (a reference file holds {window} rows)")
            raise LayoutError(f"nothing to export from {path}: {why}")
    except BaseException:
        # Nothing half-exported: the files of this export go, and the folder if this export made it.
        for target in written:
            target.unlink(missing_ok=True)
        if created:
            shutil.rmtree(out, ignore_errors=True)
        raise
    return written


def _check_out(path: Path, out: Path) -> None:
    """Refuse an output folder that is the dataset's folder or holds a dataset (its shards or manifest)."""
    folder = path if path.is_dir() else path.parent
    if out.exists() and out.is_dir():
        if out.resolve() == folder.resolve():
            raise LayoutError(f"the output {out} is the dataset folder {folder}: export to a folder of its own")
        native = [p.name for p in out.glob(SHARD_GLOB) if NATIVE_SHARD.fullmatch(p.name)]
        if native or (out / MANIFEST).exists():
            held = native[0] if native else MANIFEST
            raise LayoutError(f"the output {out} holds a dataset ({held}): export to a folder of its own (the "
                              f"reference files' names match {SHARD_GLOB} and would be taken for its shards)")


class LayoutError(ValueError):
    """A dataset that cannot be exported to the reference layout (not a damaged one)."""


def _export_episode(g: h5py.Group, where: str, stem: Path, window: int, written: list[Path]) -> list[Path]:
    """The reference-layout files of one episode group with camera images and flow (each also appended to
    ``written`` before it is created, so a failure can remove it)."""
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
