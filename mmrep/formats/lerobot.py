"""LeRobot datasets (format v3.0, the ``lerobot`` package's own writer and loader), both ways.

``export_lerobot`` writes a native mmrep dataset as a LeRobot dataset in a local folder (no hub access),
with LeRobot's writer (``LeRobotDataset.create`` / ``add_frame`` / ``save_episode`` / ``finalize``), so the
result is what LeRobot itself would write; ``meta/stats.json`` is LeRobot's. One LeRobot frame per mmrep
observation row (T + 1 per episode). The features (``FEATURES`` below, S = image size, n = F/T readings
per step, A = action size):

    observation.images.rgb   image   (S, S, 3)  uint8 camera, stored as PNG (lossless)
    observation.depth        float32 (S, S, 1)  m along the optical axis (mmrep stores float16: exact)
    observation.force        float32 (n, 6)     F/T per physics substep, N and N m, sensor frame, tared
    observation.state        float32 (13,)      PROPRIO13: EE position (m), quaternion xyzw, linear (m/s)
                                                and angular (rad/s) velocity
    observation.joint_pos    float32 (7,)       rad;   observation.joint_vel  float32 (7,) rad/s
    observation.contact      int8    (n,)       peg-block contact per substep (1 = touching)
    action                   float32 (A,)       in [-1, 1]; zeros on the last frame (no action follows it)
    next.reward              float32 (1,)       reward of the step from this frame; 0 on the last frame
    next.success             bool    (1,)       the step from this frame inserted the peg (mmrep's ``dones``)
    next.done                bool    (1,)       the last transition of the episode
    next.flow                float32 (S, S, 2)  exact optical flow to the next frame, pixels (dcol, drow);
                                                zeros on the last frame; with ``flow=True`` only
    is_last                  bool    (1,)       the episode's final observation (its action / reward are padding)
    mmrep.episode_index      int64   (1,)       the episode's index in the mmrep dataset
    mmrep.split              int64   (1,)       0 train, 1 valid

LeRobot's ``info.json`` ``splits`` gives the same split as episode ranges: the training episodes are written
first. ``info.json`` also gets an ``mmrep`` entry (units, per-episode seed, peg shape, policy, success,
the env config). The task string of each frame is "insert the <shape> peg".
"""

from __future__ import annotations

import contextlib
import json
import os
import shutil
import warnings
from pathlib import Path
from typing import Any

import h5py
import numpy as np

from sim.dataset_format import DATA_GROUP, READ_ERRORS, REPAIR_ADVICE, UnreadableFileError, read_manifest

REPO_ID = "mmrep/sim"
SPLIT_IDS = {"train": 0, "valid": 1}
FT_NAMES = ["fx", "fy", "fz", "tx", "ty", "tz"]
PROPRIO13_NAMES = ["x", "y", "z", "qx", "qy", "qz", "qw", "vx", "vy", "vz", "wx", "wy", "wz"]
UNITS = {"observation.images.rgb": "0-255", "observation.depth": "m",
         "observation.force": "N (fx fy fz), N m (tx ty tz)",
         "observation.state": "m, quaternion xyzw, m/s, rad/s", "observation.joint_pos": "rad",
         "observation.joint_vel": "rad/s", "observation.contact": "0/1", "action": "[-1, 1] (scaled displacement)",
         "next.flow": "pixels (dcol, drow)"}


def import_lerobot():
    """``(LeRobotDataset, CODEBASE_VERSION)``, or ImportError saying how to install LeRobot."""
    from mmrep.formats._torchvision import ensure_torchvision

    try:
        ensure_torchvision()
        from lerobot.datasets.lerobot_dataset import CODEBASE_VERSION, LeRobotDataset
    except ImportError as err:
        raise ImportError(f"LeRobot datasets need the lerobot package ({err}); install mmrep's extra: "
                          f"pip install -e '.[lerobot]' (see docs/formats.md)") from err
    return LeRobotDataset, CODEBASE_VERSION


def features(image_size: int, n_substeps: int, action_dim: int, camera: bool, flow: bool) -> dict[str, dict]:
    """LeRobot feature specs of an export (dtype, shape, names)."""
    s, n = image_size, n_substeps
    out: dict[str, dict] = {}
    if camera:
        out["observation.images.rgb"] = {"dtype": "image", "shape": (s, s, 3), "names": ["height", "width", "channels"]}
        out["observation.depth"] = {"dtype": "float32", "shape": (s, s, 1), "names": ["height", "width", "channels"]}
    out.update({
        "observation.force": {"dtype": "float32", "shape": (n, 6), "names": ["substep", "axis"]},
        "observation.state": {"dtype": "float32", "shape": (13,), "names": PROPRIO13_NAMES},
        "observation.joint_pos": {"dtype": "float32", "shape": (7,), "names": [f"joint{i}" for i in range(7)]},
        "observation.joint_vel": {"dtype": "float32", "shape": (7,), "names": [f"joint{i}" for i in range(7)]},
        "observation.contact": {"dtype": "int8", "shape": (n,), "names": [f"substep{i}" for i in range(n)]},
        "action": {"dtype": "float32", "shape": (action_dim,), "names": ["dx", "dy", "dz", "dyaw"][:action_dim]},
        "next.reward": {"dtype": "float32", "shape": (1,), "names": None},
        "next.success": {"dtype": "bool", "shape": (1,), "names": None},
        "next.done": {"dtype": "bool", "shape": (1,), "names": None},
        "is_last": {"dtype": "bool", "shape": (1,), "names": None},
        "mmrep.episode_index": {"dtype": "int64", "shape": (1,), "names": None},
        "mmrep.split": {"dtype": "int64", "shape": (1,), "names": None},
    })
    if camera and flow:
        out["next.flow"] = {"dtype": "float32", "shape": (s, s, 2), "names": ["height", "width", "uv"]}
    return out


def _episode_arrays(g: h5py.Group, feats: dict[str, dict]) -> dict[str, np.ndarray]:
    """Every array of one mmrep episode group that the features ``feats`` need, read into memory."""
    keys = ["obs/force", "obs/proprio", "obs/joint_pos", "obs/joint_vel", "obs/contact", "actions", "rewards",
            "dones"]
    if "observation.images.rgb" in feats:
        keys += ["obs/rgb", "obs/depth"]
    if "next.flow" in feats:
        keys.append("flow")
    return {k: g[k][()] for k in keys}


def read_episode(path: Path, entry: dict[str, Any], feats: dict[str, dict]) -> tuple[dict[str, np.ndarray], str]:
    """The arrays (``_episode_arrays``) and the peg shape of the manifest entry ``entry`` of dataset ``path``;
    UnreadableFileError naming the shard and the episode where they cannot be read (a damaged shard)."""
    shard = path / entry["shard"]
    try:
        with h5py.File(shard, "r") as f:
            g = f[f"{DATA_GROUP}/{entry['name']}"]
            return _episode_arrays(g, feats), str(g.attrs["peg_shape"])
    except READ_ERRORS as err:
        raise _unreadable(path, shard, entry["name"], err) from None


def _unreadable(path: Path, shard: Path, name: str, err: BaseException) -> UnreadableFileError:
    return UnreadableFileError(f"{shard}:{DATA_GROUP}/{name} cannot be read ({err}); run `mmrep data verify "
                               f"{path}`, repair the dataset and export again ({REPAIR_ADVICE})")


def _frames(arrays: dict[str, np.ndarray], index: int, split: int, task: str):
    """The LeRobot frames (dicts of numpy arrays) of one mmrep episode's arrays (``_episode_arrays``): T + 1
    of them."""
    obs = {k: arrays[f"obs/{k}"] for k in ("force", "proprio", "joint_pos", "joint_vel", "contact")}
    rows = obs["proprio"].shape[0]
    actions, rewards, dones = arrays["actions"], arrays["rewards"], arrays["dones"]
    rgb, depth, flow = arrays.get("obs/rgb"), arrays.get("obs/depth"), arrays.get("flow")
    for t in range(rows):
        last = t == rows - 1
        frame = {
            "observation.force": obs["force"][t].astype(np.float32),
            "observation.state": obs["proprio"][t].astype(np.float32),
            "observation.joint_pos": obs["joint_pos"][t].astype(np.float32),
            "observation.joint_vel": obs["joint_vel"][t].astype(np.float32),
            "observation.contact": obs["contact"][t].astype(np.int8),
            "action": np.zeros(actions.shape[1], np.float32) if last else actions[t].astype(np.float32),
            "next.reward": np.array([0.0 if last else rewards[t]], np.float32),
            "next.success": np.array([False if last else bool(dones[t])]),
            "next.done": np.array([t == rows - 2]),
            "is_last": np.array([last]),
            "mmrep.episode_index": np.array([index], np.int64),
            "mmrep.split": np.array([split], np.int64),
            "task": task,
        }
        if rgb is not None:
            frame["observation.images.rgb"] = rgb[t]
            frame["observation.depth"] = depth[t].astype(np.float32)
        if flow is not None:
            frame["next.flow"] = (np.zeros(flow.shape[1:], np.float32) if last else flow[t].astype(np.float32))
        yield frame


def export_lerobot(path: str | Path, out: str | Path, repo_id: str = REPO_ID, flow: bool = True,
                   episodes: int | None = None) -> dict[str, Any]:
    """Write the native dataset folder ``path`` as a LeRobot dataset in ``out`` (must not exist yet).

    ``flow=False`` leaves out the exact optical flow (the largest feature); ``episodes`` exports only the
    first that many (training ones first). Writes into ``out.partial`` and renames it at the end, so an
    interrupted export leaves no half dataset under ``out`` (a failed one removes ``out.partial``). A shard
    that cannot be read raises UnreadableFileError naming the shard and the episode. Returns LeRobot's
    ``info.json``.
    """
    path, out = Path(path), Path(out)
    if episodes is not None and (isinstance(episodes, bool) or not isinstance(episodes, int) or episodes < 1):
        raise ValueError(f"episodes must be a positive integer or None (every episode), got {episodes!r}")
    if out.exists():
        raise FileExistsError(f"{out} exists; LeRobot's writer needs a new folder")
    manifest = read_manifest(path)
    entries = sorted(manifest["episodes"], key=lambda e: (SPLIT_IDS[e["split"]], e["index"]))[:episodes]
    if not entries:
        raise ValueError(f"{path} holds no complete episode")
    first = path / entries[0]["shard"]
    try:
        with h5py.File(first, "r") as f:
            g = f[f"{DATA_GROUP}/{entries[0]['name']}"]
            env = json.loads(g.attrs["env_config"])
            camera, has_flow = "obs/rgb" in g, "flow" in g
            n, a = g["obs/force"].shape[1], g["actions"].shape[1]
            size = int(g["obs/rgb"].shape[1]) if camera else int(env["image_size"])
    except READ_ERRORS as err:
        raise _unreadable(path, first, entries[0]["name"], err) from None
    feats = features(size, n, a, camera, flow and has_flow)
    LeRobotDataset, _ = import_lerobot()
    partial = out.with_name(out.name + ".partial")
    if partial.exists():
        shutil.rmtree(partial)
    ds = None
    try:
        ds = LeRobotDataset.create(repo_id, fps=int(env["control_hz"]), features=feats, root=partial,
                                   robot_type="kuka_iiwa", use_videos=False)
        per_episode = []
        # LeRobot's statistics histogram bool features with a warning per episode and feature: expected here.
        warnings.filterwarnings("ignore", "Converting input from bool", RuntimeWarning)
        for e in entries:
            arrays, shape = read_episode(path, e, feats)
            for frame in _frames(arrays, e["index"], SPLIT_IDS[e["split"]], f"insert the {shape} peg"):
                ds.add_frame(frame)
            ds.save_episode()
            per_episode.append({"index": e["index"], "name": e["name"], "seed": e["seed"], "peg_shape": e["peg_shape"],
                                "policy": e["policy"], "success": e["success"], "split": e["split"]})
        ds.finalize()
        info_path = partial / "meta" / "info.json"
        info = json.loads(info_path.read_text())
        n_train = sum(e["split"] == "train" for e in entries)
        info["splits"] = {"train": f"0:{n_train}", **({"valid": f"{n_train}:{len(entries)}"} if n_train < len(entries)
                                                       else {})}
        info["mmrep"] = {"source": str(path), "units": {k: v for k, v in UNITS.items() if k in feats},
                         "force_axes": FT_NAMES, "state_names": PROPRIO13_NAMES,
                         "episodes": per_episode, "env_config": env,
                         "notes": "one frame per observation row; the last frame of an episode (is_last) has no "
                                  "action: its action, next.reward and next.flow are zeros"}
        info_path.write_text(json.dumps(info, indent=4))
        os.replace(partial, out)
    except BaseException:
        if ds is not None:  # close LeRobot's parquet writers first: they write their files when closed
            with contextlib.suppress(Exception):  # the first error is the one to report
                ds.finalize()
        shutil.rmtree(partial, ignore_errors=True)  # no half dataset left, not even as out.partial
        raise
    return info


def open_lerobot(root: str | Path, repo_id: str | None = None, episodes: list[int] | None = None):
    """LeRobot's own ``LeRobotDataset`` on a local folder, offline (no hub access)."""
    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    LeRobotDataset, _ = import_lerobot()
    root = Path(root)
    if not (root / "meta" / "info.json").exists():
        raise FileNotFoundError(f"{root} is not a LeRobot dataset (no meta/info.json)")
    return LeRobotDataset(repo_id or REPO_ID, root=root, episodes=episodes)
