"""Reading datasets: the torch Dataset, negatives, data tools, the reference layout, the CLI."""

import shutil

import h5py
import numpy as np
import pytest
import torch
from torch.utils.data import DataLoader

from mmrep.cli import main
from mmrep.config import collect_config, config_dir
from mmrep.data import MultimodalDataset
from sim.collect import CollectConfig, collect
from sim.dataset_format import info, verify
from sim.observation import proprio8_from_proprio13
from sim.reference_layout import REFERENCE_KEYS, export_reference

ENV = {"max_steps": 55, "image_size": 32}


@pytest.fixture(scope="module")
def dataset_dir(tmp_path_factory):
    out = tmp_path_factory.mktemp("ds")
    collect(CollectConfig(episodes=5, out=str(out), env=ENV, workers=1,
                          policies={"random": 1.0, "contact_seeking": 1.0}), progress=False)
    return out


def test_sample_shapes_and_labels(dataset_dir):
    ds = MultimodalDataset(dataset_dir, split="train")
    assert len(ds) == 4 * 55  # 4 train episodes of 55 transitions
    s = ds[60]
    assert s["rgb"].shape == (3, 32, 32) and s["rgb"].dtype == torch.uint8
    assert s["depth"].shape == (1, 32, 32) and s["flow"].shape == (2, 32, 32)
    assert s["force"].shape == (50, 6) and s["proprio"].shape == (8,) and s["action"].shape == (4,)
    assert torch.equal(s["flow_mask"][0] > 0, s["flow"].abs().sum(0) > 0)
    ep, t = ds.locate(60)
    e = ds.episodes[ep]
    with h5py.File(e.file, "r") as f:
        g = f[e.group]
        assert np.array_equal(s["rgb"].numpy().transpose(1, 2, 0), g["obs/rgb"][t])
        assert s["contact_next"].item() == float(g["obs/contact"][t + 1].any())
        p8 = proprio8_from_proprio13(g["obs/proprio"][()])
        assert np.allclose(s["ee_next"].numpy(), p8[t + 1, :4])
        assert np.allclose(s["action"].numpy()[:3], g["actions"][t])


def test_negatives_follow_the_rules_and_are_seeded(dataset_dir):
    ds = MultimodalDataset(dataset_dir, split="train", seed=1, cross_episode_prob=0.5, min_shift=5)
    kinds, far = [], []
    for i in range(0, len(ds), 7):
        ep, t = ds.locate(i)
        neg_ep, neg_t, kind = ds.negative_of(i)
        s = ds[i]
        assert torch.allclose(s["proprio_neg"], torch.from_numpy(ds.proprio[neg_ep][neg_t]))
        kinds.append(kind)
        if kind == 0:
            assert neg_ep == ep and abs(neg_t - t) >= 5
        else:
            assert neg_ep != ep
            far.append(np.linalg.norm(ds.proprio[neg_ep][neg_t, :3] - ds.proprio[ep][t, :3]) >= 0.06)
    assert 0.3 < np.mean(kinds) < 0.7
    assert np.mean(far) > 0.8  # the rest are the farthest of the tries
    again = MultimodalDataset(dataset_dir, split="train", seed=1)
    assert torch.equal(again[33]["force_neg"], ds[33]["force_neg"])
    again.set_epoch(1)
    assert any(not torch.equal(again[i]["proprio_neg"], ds[i]["proprio_neg"]) for i in range(0, 50, 5))


def test_cache_and_workers_give_identical_batches(dataset_dir):
    plain = MultimodalDataset(dataset_dir, split="valid")
    cached = MultimodalDataset(dataset_dir, split="valid", cache=True)
    a = next(iter(DataLoader(plain, batch_size=16)))
    b = next(iter(DataLoader(cached, batch_size=16, num_workers=2)))
    for key in a:
        assert torch.equal(a[key], b[key]), key


def test_valid_split_is_disjoint_by_episode(dataset_dir):
    train = {e.name for e in MultimodalDataset(dataset_dir, split="train").episodes}
    valid = {e.name for e in MultimodalDataset(dataset_dir, split="valid").episodes}
    assert len(valid) == 1 and not train & valid


def test_info_counts(dataset_dir):
    d = info(dataset_dir)
    assert d["episodes"] == 5 and d["steps"] == 5 * 55 and d["splits"] == {"train": 4, "valid": 1}
    assert sum(d["per_shape"].values()) == 5 and 0 < d["contact_ratio"] < 1 and d["size_bytes"] > 0


def test_verify_passes_then_names_a_truncated_shard(dataset_dir, tmp_path, capsys):
    assert verify(dataset_dir) == []
    copy = tmp_path / "copy"
    shutil.copytree(dataset_dir, copy)
    shard = copy / "shard_000.h5"
    size = shard.stat().st_size
    with open(shard, "r+b") as f:
        f.truncate(size // 2)
    problems = verify(copy)
    assert any("shard_000.h5" in p and "truncated" in p for p in problems)
    assert main(["data", "verify", str(copy)]) == 1
    assert "shard_000.h5" in capsys.readouterr().out


def test_verify_names_a_changed_episode(dataset_dir, tmp_path):
    copy = tmp_path / "copy"
    shutil.copytree(dataset_dir, copy)
    with h5py.File(copy / "shard_000.h5", "a") as f:
        name = sorted(f["data"])[0]
        f["data"][name]["obs/proprio"][3, 0] = np.nan
    problems = verify(copy)
    assert any(name in p and "NaN" in p for p in problems)
    assert any(name in p and "checksum" in p for p in problems)


@pytest.mark.parametrize("key", ["obs/force", "actions"])
def test_verify_names_an_episode_missing_an_array(dataset_dir, tmp_path, key):
    copy = tmp_path / "copy"
    shutil.copytree(dataset_dir, copy)
    with h5py.File(copy / "shard_000.h5", "a") as f:
        name = sorted(f["data"])[1]
        del f["data"][name][key]
    problems = verify(copy)  # was a KeyError from the checksum of an episode without the array
    assert any(name in p and key in p for p in problems), problems


def test_export_reference_layout_read_independently(dataset_dir, tmp_path):
    files = export_reference(dataset_dir, tmp_path / "ref")
    assert len(files) == 5  # one whole 50-row window per 56-row episode
    with h5py.File(files[0], "r") as r, h5py.File(dataset_dir / "shard_000.h5", "r") as f:
        name = sorted(f["data"])[0]
        g = f["data"][name]
        assert set(r.keys()) == set(REFERENCE_KEYS)
        for key, row_shape in REFERENCE_KEYS.items():
            if key not in ("image", "depth_data", "optical_flow"):  # these follow the image size
                assert r[key].shape == (50, *row_shape), key
        assert r["image"].shape == (50, 32, 32, 3)
        assert np.array_equal(r["image"][()], g["obs/rgb"][:50])
        assert np.allclose(r["ee_pos"][()], g["obs/proprio"][:50, :3])
        assert np.allclose(r["optical_flow"][:49], g["flow"][:49].astype(np.float32))


def test_dataset_reads_reference_layout(dataset_dir, tmp_path):
    export_reference(dataset_dir, tmp_path / "ref")
    ref = MultimodalDataset(tmp_path / "ref", split=None)
    assert len(ref) == 5 * 49
    native = MultimodalDataset(dataset_dir, split=None)
    # The first file is the first 50 rows of the first episode of shard_000.
    first = next(i for i, e in enumerate(native.episodes) if e.file.name == "shard_000.h5")
    a, b = ref[3], native[native.index_of(first, 3)]
    for key in ("rgb", "depth", "force", "proprio", "action", "flow", "contact_next", "ee_next"):
        assert torch.allclose(a[key].float(), b[key].float(), atol=1e-6), key
    train, valid = MultimodalDataset(tmp_path / "ref", "train"), MultimodalDataset(tmp_path / "ref", "valid")
    assert len(train.episodes) == 4 and len(valid.episodes) == 1


def test_reference_depth_holes_and_far_readings_read_as_zero(dataset_dir, tmp_path):
    files = export_reference(dataset_dir, tmp_path / "ref")
    with h5py.File(files[0], "r+") as f:
        f["depth_data"][2, 0, :4, 0] = [np.nan, np.inf, -1.0, 5.0]
        kept = float(f["depth_data"][2, 1, 0, 0])
    d = MultimodalDataset(files[0], split=None)[2]["depth"]
    assert torch.isfinite(d).all() and d[0, 0, :4].eq(0).all() and float(d[0, 1, 0]) == pytest.approx(kept)


def test_missing_path_and_bad_split_raise(dataset_dir, tmp_path):
    with pytest.raises(FileNotFoundError, match="does not exist"):
        MultimodalDataset(tmp_path / "nope")
    with pytest.raises(ValueError, match="split"):
        MultimodalDataset(dataset_dir, split="test")


@pytest.mark.parametrize("env", sorted(p.stem for p in (config_dir() / "env").glob("*.yaml")))
def test_every_collect_config_composes(env):
    cfg = collect_config([f"env={env}"])
    for shape in cfg.shapes:
        env_cfg = cfg.env_config(shape)
        env_cfg.validate()
        assert env_cfg.peg_shape == shape and env_cfg.compute_flow
    assert cfg.progress is True


def test_collect_cli_rejects_bad_override(capsys):
    assert main(["collect", "episodes=0"]) == 2
    assert "episodes" in capsys.readouterr().err


def test_collect_cli_runs(tmp_path, capsys):
    assert main(["collect", "episodes=2", "workers=1", "env=small", "env.max_steps=5",
                 f"out={tmp_path}"]) == 0
    assert "episodes     2" in capsys.readouterr().out


def test_app_help_and_bad_group_option(capsys):
    assert main(["collect", "--help"]) == 0
    out = capsys.readouterr().out
    assert "episodes: 20" in out and "env: close, default, fast, small" in out
    assert main(["train", "model=nonexistent"]) == 2
    assert "model/nonexistent" in capsys.readouterr().err
