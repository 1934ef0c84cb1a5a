"""LeRobot datasets both ways, checked with LeRobot's own loader and writer (the ``lerobot`` extra)."""

import json

import h5py
import numpy as np
import pytest
from conftest import collect_small

pytest.importorskip("lerobot", reason="the lerobot extra is not installed (pip install -e '.[lerobot]')")

from mmrep.cli import main  # noqa: E402
from mmrep.formats.lerobot import open_lerobot  # noqa: E402
from sim.dataset_format import DATA_GROUP, read_manifest  # noqa: E402


@pytest.fixture(scope="module")
def sim_data(tmp_path_factory):
    return collect_small(tmp_path_factory.mktemp("lr_sim"), episodes=4, max_steps=20)


@pytest.fixture(scope="module")
def exported(sim_data, tmp_path_factory):
    out = tmp_path_factory.mktemp("lr_out") / "ds"
    assert main(["data", "export", "format=lerobot", f"data={sim_data}", f"out={out}"]) == 0
    return out


def test_export_round_trip_with_lerobots_loader(sim_data, exported, monkeypatch):
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    ds = open_lerobot(exported)
    info = json.loads((exported / "meta" / "info.json").read_text())
    assert info["codebase_version"] == "v3.0"
    manifest = read_manifest(sim_data)
    assert ds.meta.total_episodes == len(manifest["episodes"])
    # the split as LeRobot's episode ranges, training episodes first
    n_train = len(manifest["splits"]["train"])
    assert info["splits"]["train"] == f"0:{n_train}"
    stats = json.loads((exported / "meta" / "stats.json").read_text())
    for key in ("observation.force", "observation.state", "action", "observation.depth"):
        assert {"mean", "std", "min", "max"} <= set(stats[key])
    checked = 0
    for ep in range(ds.meta.total_episodes):
        start, stop = ds.meta.episodes[ep]["dataset_from_index"], ds.meta.episodes[ep]["dataset_to_index"]
        frames = [ds[i] for i in range(start, stop)]
        index = int(frames[0]["mmrep.episode_index"])
        entry = next(e for e in manifest["episodes"] if e["index"] == index)
        assert int(frames[0]["mmrep.split"]) == {"train": 0, "valid": 1}[entry["split"]]
        with h5py.File(sim_data / entry["shard"], "r") as f:
            g = f[f"{DATA_GROUP}/{entry['name']}"]
            rows = g["obs/proprio"].shape[0]
            assert len(frames) == rows

            def col(key, frames=frames):
                return np.stack([fr[key].numpy() for fr in frames])

            # PNG is lossless: LeRobot hands images back as float CHW in [0, 1]
            rgb = np.round(col("observation.images.rgb") * 255).astype(np.uint8).transpose(0, 2, 3, 1)
            np.testing.assert_array_equal(rgb, g["obs/rgb"][()])
            np.testing.assert_array_equal(col("observation.depth"), g["obs/depth"][()].astype(np.float32))
            np.testing.assert_array_equal(col("observation.force"), g["obs/force"][()])
            np.testing.assert_array_equal(col("observation.state"), g["obs/proprio"][()])
            np.testing.assert_array_equal(col("observation.joint_pos"), g["obs/joint_pos"][()])
            np.testing.assert_array_equal(col("observation.joint_vel"), g["obs/joint_vel"][()])
            np.testing.assert_array_equal(col("observation.contact"), g["obs/contact"][()])
            np.testing.assert_array_equal(col("action")[:-1], g["actions"][()])
            np.testing.assert_array_equal(col("next.reward")[:-1], g["rewards"][()])
            np.testing.assert_array_equal(col("next.success")[:-1], g["dones"][()])
            np.testing.assert_array_equal(col("next.flow")[:-1], g["flow"][()].astype(np.float32))
            assert col("is_last").tolist() == [False] * (rows - 1) + [True]
            assert frames[0]["task"] == f"insert the {entry['peg_shape']} peg"
        checked += 1
    assert checked == len(manifest["episodes"])


def test_export_refuses_an_existing_folder(sim_data, exported, capsys):
    assert main(["data", "export", "format=lerobot", f"data={sim_data}", f"out={exported}"]) == 2
    assert str(exported) in capsys.readouterr().err
