"""LeRobot datasets both ways, checked with LeRobot's own loader and writer (the ``lerobot`` extra)."""

import json

import h5py
import numpy as np
import pytest
import torch
from conftest import collect_small

pytest.importorskip("lerobot", reason="the lerobot extra is not installed (pip install -e '.[lerobot]')")

from mmrep.cli import main  # noqa: E402
from mmrep.config import TrainConfig  # noqa: E402
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


def test_training_samples_from_the_export_equal_the_native_ones(sim_data, exported):
    from mmrep.data.dataset import MultimodalDataset

    for split in ("train", "valid"):
        native = MultimodalDataset(sim_data, split, seed=3)
        lero = MultimodalDataset(exported, split, seed=3)
        assert len(lero) == len(native) and lero.source.kind == "lerobot"
        for i in (0, len(native) // 2, len(native) - 1):
            a, b = native[i], lero[i]
            for key in ("rgb", "depth", "force", "proprio", "action", "flow", "contact_next", "ee_next",
                        "force_neg", "proprio_neg", "insertion_offset"):
                assert torch.equal(a[key], b[key]), (split, i, key)


def test_train_on_the_export(exported, tmp_path):
    from mmrep.train import train

    cfg = TrainConfig(data=str(exported), out=str(tmp_path / "run"), epochs=1, batch_size=8, num_workers=0,
                      max_batches_per_epoch=2, max_val_batches=1, threads=1, progress=False)
    cfg.validate()
    result = train(cfg, progress=False)
    assert np.isfinite(result["final"]["loss/total"]) and (tmp_path / "run" / "encoder.pt").exists()


def _write_with_lerobots_writer(root, episodes=3, steps=30):
    """A LeRobot dataset made by LeRobot's own writer from env observations: a front camera, a 6-D wrench
    per frame, an 8-D state in PROPRIO8 order, 3-D actions; no depth, contact or flow."""
    import gymnasium as gym

    import sim  # noqa: F401
    from mmrep.formats.lerobot import import_lerobot
    from sim.observation import proprio8_from_proprio13

    LeRobotDataset, _ = import_lerobot()
    feats = {"observation.images.front": {"dtype": "image", "shape": (64, 64, 3),
                                          "names": ["height", "width", "channels"]},
             "observation.wrench": {"dtype": "float32", "shape": (6,), "names": ["fx", "fy", "fz", "tx", "ty", "tz"]},
             "observation.state": {"dtype": "float32", "shape": (8,), "names": None},
             "action": {"dtype": "float32", "shape": (3,), "names": ["dx", "dy", "dz"]}}
    ds = LeRobotDataset.create("someone/insertion", fps=20, features=feats, root=root, use_videos=False)
    env = gym.make("mmrep/PegInsertion-v0", image_size=64, physics_hz=240.0)
    for ep in range(episodes):
        obs, _ = env.reset(seed=ep)
        for _ in range(steps):
            action = np.array([0.0, 0.0, -1.0], np.float32)  # straight down: touches after about 26 steps
            ds.add_frame({"observation.images.front": obs["rgb"], "observation.wrench": obs["force"][-1].copy(),
                          "observation.state": proprio8_from_proprio13(obs["proprio"]), "action": action,
                          "task": "insert"})
            obs, *_ = env.step(action)
        ds.save_episode()
    ds.finalize()
    env.close()
    return root


FOREIGN_KEYS = ["lerobot.rgb=observation.images.front", "lerobot.depth=null", "lerobot.force=observation.wrench",
                "lerobot.proprio_layout=proprio8", "lerobot.contact=null", "lerobot.flow=null"]


def test_train_on_a_dataset_written_by_lerobots_writer(tmp_path, capsys):
    from mmrep.data.dataset import MultimodalDataset

    root = _write_with_lerobots_writer(tmp_path / "foreign")
    common = [f"data={root}", "epochs=1", "batch_size=8", "num_workers=0", "max_batches_per_epoch=2",
              "max_val_batches=1", "threads=1", "progress=false", *FOREIGN_KEYS]
    # the flow head needs the simulator's exact flow: refused, naming the switch
    assert main(["train", *common, f"out={tmp_path / 'bad'}", "model.depth=false"]) == 2
    assert "model.flow=false" in capsys.readouterr().err
    assert main(["train", *common, f"out={tmp_path / 'bad2'}", "model.flow=false"]) == 2
    assert "model.depth=false" in capsys.readouterr().err
    assert main(["train", *common, f"out={tmp_path / 'run'}", "model.flow=false", "model.depth=false"]) == 0
    assert (tmp_path / "run" / "encoder.pt").exists()
    # contact derived from the wrench (|F| > 2 N), F/T windows built from consecutive frames
    keys = dict(k.removeprefix("lerobot.").split("=") for k in FOREIGN_KEYS)
    keys = {k: (None if v == "null" else v) for k, v in keys.items()}
    ds = MultimodalDataset(root, None, lerobot=keys)
    ep = ds.episodes[0]
    force = ds.source.read(ep, "force", slice(None))
    assert force.shape == (ep.num_obs, 8, 6)
    wrench = np.asarray(ds.source.table[0:ep.num_obs]["observation.wrench"])
    np.testing.assert_array_equal(force[:, -1], wrench)  # the newest reading of each window is the frame's
    np.testing.assert_array_equal(force[5, :-1], force[4, 1:])  # consecutive windows overlap by one frame
    contact = ds.source.read(ep, "contact", slice(None))
    np.testing.assert_array_equal(contact.any(1), np.linalg.norm(force[..., :3], axis=-1).max(1) > 2.0)
    assert contact.any(), "pushing down onto the block must make contact"
