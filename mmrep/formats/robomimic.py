"""A robomimic view of an mmrep dataset: one HDF5 file in robomimic's layout whose arrays are HDF5 virtual
datasets over the shards (nothing is copied; h5py only, no torch).

    mmrep data export format=robomimic data=data/sim out=data/sim_robomimic.hdf5

robomimic's ``SequenceDataset`` expects ``data/demo_<i>`` groups with a ``num_samples`` attribute (N, the
number of actions) and N rows in every ``obs/<key>`` and ``next_obs/<key>``; mmrep stores N + 1
observation rows. The view maps rows 0..N-1 of each observation array to ``obs/<key>`` and rows 1..N to
``next_obs/<key>``, and ``actions``, ``rewards``, ``dones`` as they are; ``mask/train`` and ``mask/valid``
hold the split; ``data`` carries ``env_args`` (JSON) and ``total``. Keys and robomimic modalities:

    obs/rgb        (S, S, 3) uint8    rgb        obs/depth      (S, S, 1) float16  depth (m)
    obs/proprio    (13,) float32      low_dim    obs/joint_pos  (7,) float32       low_dim
    obs/joint_vel  (7,)  float32      low_dim    obs/force      (n, 6) float32     see below
    obs/contact    (n,)  int8         low_dim

What robomimic cannot use as it is: ``obs/force`` is a window (n F/T readings per step) where robomimic's
low-dimensional encoders expect a vector: its dataset loads it with its shape, its networks need it
flattened (n x 6) or reduced first; ``flow`` (the exact optical flow labels) has no robomimic key and is
left out. The view refers to the shards by absolute path: keep them where they are.
"""

from __future__ import annotations

import json
from pathlib import Path

import h5py
import numpy as np

from sim.dataset_format import DATA_GROUP, READ_ERRORS, REPAIR_ADVICE, UnreadableFileError, read_manifest

OBS_KEYS = ("rgb", "depth", "force", "proprio", "contact", "joint_pos", "joint_vel")
STEP_KEYS = ("actions", "rewards", "dones")


def _virtual(dst: h5py.Group, name: str, src_file: Path, src_path: str, shape, dtype, rows: slice) -> None:
    n = rows.stop - rows.start
    layout = h5py.VirtualLayout(shape=(n, *shape[1:]), dtype=dtype)
    layout[:] = h5py.VirtualSource(str(src_file), src_path, shape=shape)[rows]
    dst.create_virtual_dataset(name, layout)


def _episode_layout(path: Path, entry: dict) -> tuple[dict, int, dict[str, tuple[str, tuple, np.dtype]]]:
    """What the view needs of the manifest entry ``entry`` of dataset ``path``: its env config, its number
    of steps and {key: (path in the shard, shape, dtype)} of its arrays (``obs/<key>`` and the step keys);
    UnreadableFileError naming the shard and the episode where they cannot be read (a damaged shard)."""
    shard, name = path / entry["shard"], entry["name"]
    try:
        with h5py.File(shard, "r") as src:
            g = src[f"{DATA_GROUP}/{name}"]
            arrays = {key: (f"{DATA_GROUP}/{name}/{key}", g[key].shape, g[key].dtype)
                      for key in (*(f"obs/{k}" for k in OBS_KEYS), *STEP_KEYS) if key in g or key in STEP_KEYS}
            return json.loads(g.attrs["env_config"]), int(g.attrs["num_steps"]), arrays
    except READ_ERRORS as err:
        raise UnreadableFileError(f"{shard}:{DATA_GROUP}/{name} cannot be read ({err}); run `mmrep data verify "
                                  f"{path}`, repair the dataset and export again ({REPAIR_ADVICE})") from None


def export_robomimic(path: str | Path, out: str | Path) -> Path:
    """Write the robomimic view of dataset folder ``path`` to ``out`` (an ``.hdf5`` file); return it.

    Writes ``out.partial`` and renames it at the end; a failed export removes it. A shard whose episode
    cannot be read raises UnreadableFileError naming the shard and the episode (the view reads the shards'
    layout only, not their data: ``mmrep data verify`` checks that)."""
    path, out = Path(path).resolve(), Path(out)
    if out.exists():
        raise FileExistsError(f"{out} exists")
    manifest = read_manifest(path)
    if not manifest["episodes"]:
        raise ValueError(f"{path} holds no complete episode")
    out.parent.mkdir(parents=True, exist_ok=True)
    tmp = out.with_name(out.name + ".partial")
    env_config = None
    masks: dict[str, list[str]] = {"train": [], "valid": []}
    total = 0
    try:
        with h5py.File(tmp, "w") as f:
            data = f.create_group("data")
            for i, e in enumerate(manifest["episodes"]):
                demo = f"demo_{i}"
                shard = path / e["shard"]
                config, n, arrays = _episode_layout(path, e)
                env_config = env_config or config
                d = data.create_group(demo)
                for key, (src_path, shape, dtype) in arrays.items():
                    if key.startswith("obs/"):
                        key = key.removeprefix("obs/")
                        _virtual(d.require_group("obs"), key, shard, src_path, shape, dtype, slice(0, n))
                        _virtual(d.require_group("next_obs"), key, shard, src_path, shape, dtype, slice(1, n + 1))
                    else:
                        _virtual(d, key, shard, src_path, shape, dtype, slice(0, n))
                d.attrs["num_samples"] = n
                for k in ("seed", "peg_shape", "policy", "success"):
                    d.attrs[k] = e[k]
                d.attrs["mmrep_episode"] = e["name"]
                masks[e["split"]].append(demo)
                total += n
            data.attrs["total"] = total
            data.attrs["env_args"] = json.dumps({"env_name": "mmrep/PegInsertion-v0", "type": None,
                                                 "env_kwargs": env_config})
            for split, names in masks.items():
                f.create_dataset(f"mask/{split}", data=np.array(names, dtype="S"))
        tmp.replace(out)
    except BaseException:
        tmp.unlink(missing_ok=True)  # no half view left behind
        raise
    return out
