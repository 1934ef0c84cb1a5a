"""robomimic's own SequenceDataset reads an mmrep dataset through the robomimic view (the robomimic extra)."""

import h5py
import numpy as np
import pytest
from conftest import collect_small

from mmrep.cli import main
from mmrep.formats._torchvision import ensure_torchvision
from sim.dataset_format import DATA_GROUP, read_manifest

pytest.importorskip("robomimic", reason="the robomimic extra is not installed (pip install -e '.[robomimic]')")
ensure_torchvision()  # robomimic imports torchvision

import robomimic.utils.obs_utils as ObsUtils  # noqa: E402
from robomimic.utils.dataset import SequenceDataset  # noqa: E402

OBS = ["rgb", "depth", "proprio", "force", "joint_pos", "joint_vel", "contact"]


@pytest.mark.parametrize("cache", [None, "low_dim"])
def test_sequence_dataset_reads_every_array(tmp_path, cache):
    data = collect_small(tmp_path / "sim", episodes=3, max_steps=12)
    view = tmp_path / "view.hdf5"
    assert main(["data", "export", "format=robomimic", f"data={data}", f"out={view}"]) == 0
    ObsUtils.initialize_obs_utils_with_obs_specs({"obs": {"low_dim": ["proprio", "joint_pos", "joint_vel", "force",
                                                                      "contact"], "rgb": ["rgb"], "depth": ["depth"]}})
    manifest = read_manifest(data)
    for split in ("train", "valid"):
        ds = SequenceDataset(str(view), obs_keys=OBS, dataset_keys=["actions", "rewards", "dones"], seq_length=1,
                             filter_by_attribute=split, hdf5_cache_mode=cache, hdf5_use_swmr=False)
        entries = [e for e in manifest["episodes"] if e["split"] == split]
        assert len(ds) == sum(e["num_steps"] for e in entries)
        i = 0
        for e in entries:
            with h5py.File(data / e["shard"], "r") as f:
                g = f[f"{DATA_GROUP}/{e['name']}"]
                for t in range(e["num_steps"]):
                    s = ds[i]
                    i += 1
                    for key in OBS:
                        np.testing.assert_array_equal(s["obs"][key][0], g[f"obs/{key}"][t], err_msg=key)
                        np.testing.assert_array_equal(s["next_obs"][key][0], g[f"obs/{key}"][t + 1], err_msg=key)
                    np.testing.assert_array_equal(s["actions"][0], g["actions"][t])
                    assert s["rewards"][0] == g["rewards"][t] and s["dones"][0] == g["dones"][t]
