"""Bad data stops cleanly: corrupted chunks and NaN inputs are named, a NaN loss stops the run, and no
checkpoint or encoder with non-finite weights is ever written."""

import json

import h5py
import numpy as np
import pytest
import torch

import mmrep
from mmrep.cli import main
from mmrep.data import DataReadError, MultimodalDataset, NonFiniteDataError
from mmrep.encoder import NonFiniteWeightsError, export_encoder
from mmrep.models import ModelConfig, MultimodalModel
from mmrep.train import NonFiniteLossError, TrainConfig, load_checkpoint, train
from sim.collect import CollectConfig, collect
from sim.reference_layout import export_reference


@pytest.fixture(scope="module")
def data64(tmp_path_factory):
    out = tmp_path_factory.mktemp("bad64")
    collect(CollectConfig(episodes=3, out=str(out), env={"max_steps": 12, "image_size": 64}, workers=1,
                          policies={"contact_seeking": 1.0}, valid_fraction=0.34), progress=False)
    return out


def _cfg(data, out, **kw):
    base = dict(data=str(data), out=str(out), epochs=1, batch_size=8, num_workers=0, threads=1, progress=False)
    return TrainConfig(**{**base, **kw})


def _copy(src, dst):
    import shutil

    shutil.copytree(src, dst)
    return dst


def test_corrupted_rgb_chunk_names_file_episode_and_key(data64, tmp_path, capsys):
    data = _copy(data64, tmp_path / "data")
    manifest = json.loads((data / "manifest.json").read_text())
    victim = next(e for e in manifest["episodes"] if e["split"] == "train")
    shard = data / victim["shard"]
    with h5py.File(shard, "r") as f:
        chunk = f[f"data/{victim['name']}/obs/rgb"].id.get_chunk_info(3)
    raw = bytearray(shard.read_bytes())
    for k in range(chunk.byte_offset + 4, chunk.byte_offset + min(chunk.size, 64)):
        raw[k] ^= 0xFF  # flipped bytes inside one compressed frame
    shard.write_bytes(bytes(raw))
    assert main(["train", f"data={data}", f"out={tmp_path / 'run'}", "epochs=1", "batch_size=8", "threads=1",
                 "progress=false"]) == 2
    err = capsys.readouterr().err
    assert str(shard) in err and victim["name"] in err and "'rgb'" in err and "rows 3" in err
    with pytest.raises(DataReadError):
        ds = MultimodalDataset(data, "train")
        for i in range(len(ds)):
            ds[i]


def _nan_reference(data64, tmp_path):
    files = export_reference(data64, tmp_path / "ref", window=10)
    with h5py.File(files[0], "a") as f:
        f["ee_forces_continuous"][2:5, 10:20] = np.nan  # NaN in ten F/T rows of three steps
    return tmp_path / "ref", files[0]


def test_nan_in_force_is_refused_naming_the_file(data64, tmp_path, capsys):
    ref, bad = _nan_reference(data64, tmp_path)
    assert main(["train", f"data={ref}", f"out={tmp_path / 'run'}", "epochs=1", "batch_size=4", "threads=1",
                 "progress=false"]) == 2
    err = capsys.readouterr().err
    assert str(bad) in err and "'force'" in err and "skip_nonfinite" in err
    assert not (tmp_path / "run" / "encoder.pt").exists()


def test_nan_samples_can_be_skipped_and_are_counted(data64, tmp_path):
    ref, _ = _nan_reference(data64, tmp_path)
    result = train(_cfg(ref, tmp_path / "run", batch_size=4, skip_nonfinite=True))
    skipped = result["skipped_samples"] + result["final"].get("skipped_samples_valid", 0)
    assert skipped >= 3 and result["final"]["skipped_samples"] == result["skipped_samples"]
    assert np.isfinite(result["final"]["loss/total"])
    blob = torch.load(tmp_path / "run" / "encoder.pt", weights_only=True)["state_dict"]
    assert all(torch.isfinite(v).all() for v in blob.values() if v.is_floating_point())


def test_nan_in_proprio_is_refused_at_construction(data64, tmp_path):
    data = _copy(data64, tmp_path / "data")
    manifest = json.loads((data / "manifest.json").read_text())
    e = manifest["episodes"][0]
    with h5py.File(data / e["shard"], "a") as f:
        f[f"data/{e['name']}/obs/proprio"][4, 0] = np.inf
    with pytest.raises(NonFiniteDataError, match=rf"'proprio' of .*{e['name']} at step\(s\) \[4\]"):
        MultimodalDataset(data, split=None)


def test_nonfinite_loss_stops_and_keeps_the_last_finite_checkpoint(data64, tmp_path):
    out = tmp_path / "run"
    with pytest.raises(NonFiniteLossError, match=r"at step \d+ .*last finite checkpoint") as err:
        train(_cfg(data64, out, epochs=3, lr=1e37, ckpt_every_steps=1, kl_warmup_steps=0))
    assert "step" in str(err.value)
    assert not (out / "encoder.pt").exists()
    if (out / "last.pt").exists():
        weights = load_checkpoint(out / "last.pt")["model"]
        assert all(torch.isfinite(v).all() for v in weights.values() if v.is_floating_point())


def test_encoder_with_nonfinite_weights_is_never_written(tmp_path):
    model = MultimodalModel(ModelConfig(image_size=64))
    with torch.no_grad():
        model.encoder.encoders["force"].convs[0].weight[0, 0, 0] = float("nan")
    with pytest.raises(NonFiniteWeightsError, match="encoders.force.convs.0.weight"):
        export_encoder(model.encoder, tmp_path / "encoder.pt")
    assert not (tmp_path / "encoder.pt").exists() and not list(tmp_path.iterdir())


def test_load_encoder_says_what_is_wrong(tmp_path):
    (tmp_path / "notes.pt").write_text("not a checkpoint")
    with pytest.raises(ValueError, match="not an mmrep encoder file"):
        mmrep.load_encoder(tmp_path / "notes.pt")
    torch.save({"weights": torch.zeros(2)}, tmp_path / "other.pt")
    with pytest.raises(ValueError, match="not an mmrep encoder file"):
        mmrep.load_encoder(tmp_path / "other.pt")


def test_encoder_files_of_the_first_format_still_load(tmp_path):
    model = MultimodalModel(ModelConfig(image_size=64))
    old_names = {"encoders.rgb.": "rgb_encoder.", "encoders.depth.": "depth_encoder.",
                 "encoders.force.": "force_encoder.", "encoders.proprio.": "proprio_encoder."}
    state = {}
    for key, value in model.encoder.state_dict().items():
        for new, old in old_names.items():
            key = key.replace(new, old) if key.startswith(new) else key
        state[key] = value
    torch.save({"state_dict": state, "config": json.dumps(model.cfg.to_dict()), "format": "mmrep-encoder-1"},
               tmp_path / "old.pt")
    enc = mmrep.load_encoder(tmp_path / "old.pt")
    assert all(torch.equal(a, b) for a, b in zip(enc.state_dict().values(), model.encoder.state_dict().values()))
