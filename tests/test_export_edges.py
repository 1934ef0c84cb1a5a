"""The edges of the exports: ``mmrep data export`` (reference, LeRobot, robomimic) into a wrong folder, of
nothing, of a damaged dataset, with bad arguments; ``mmrep export-encoder``'s output paths and arguments."""

import json
import shutil

import h5py
import pytest
from conftest import collect_small

from mmrep.cli import main as cli
from mmrep.formats.lerobot import export_lerobot
from mmrep.formats.robomimic import export_robomimic
from sim.dataset_format import UnreadableFileError, verify
from sim.reference_layout import LayoutError, export_reference


@pytest.fixture(scope="module")
def data(tmp_path_factory):
    """Three 64x64 episodes of at most 12 steps: shorter than a 50-row reference window."""
    return collect_small(tmp_path_factory.mktemp("export_edges"), episodes=3, max_steps=12)


def _copy(data, tmp_path):
    copy = tmp_path / "copy"
    shutil.copytree(data, copy)
    return copy


# ------------------------------------------------------------------------------------ reference layout
def test_reference_export_refuses_the_dataset_folder_and_a_folder_holding_shards(data, tmp_path, capsys):
    copy = _copy(data, tmp_path)
    before = sorted(p.name for p in copy.iterdir())
    with pytest.raises(LayoutError, match="is the dataset folder"):
        export_reference(copy, copy, window=5)
    assert cli(["data", "export", "--format", "reference", str(copy), str(copy)]) == 2
    assert "is the dataset folder" in capsys.readouterr().err
    other = _copy(data, tmp_path / "other")  # another dataset's folder: its shards would be mixed with ours
    with pytest.raises(LayoutError, match="holds a dataset"):
        export_reference(copy, other, window=5)
    with pytest.raises(LayoutError, match="is the dataset folder"):  # a shard given: its folder is the dataset's
        export_reference(copy / "shard_000.h5", copy, window=5)
    assert sorted(p.name for p in copy.iterdir()) == before and verify(copy) == []
    # a folder of an earlier reference export (files named shard_*_ep_*.h5) is no dataset: exported again
    out = tmp_path / "ref"
    first = export_reference(copy, out, window=5)
    assert first and export_reference(copy, out, window=5) == first


def test_reference_export_of_nothing_is_an_error_and_leaves_no_folder(data, tmp_path, capsys):
    out = tmp_path / "ref"
    assert cli(["data", "export", "--format", "reference", str(data), str(out)]) == 2  # every episode < 50 steps
    assert "nothing to export" in capsys.readouterr().err and not out.exists()
    with pytest.raises(LayoutError, match="shorter than 50 steps"):
        export_reference(data, out)
    empty = tmp_path / "empty"
    empty.mkdir()
    with pytest.raises(LayoutError, match=r"no shard_\*\.h5 files"):
        export_reference(empty, out)
    assert not out.exists()


# ------------------------------------------------------------------------------------ damaged datasets
def _truncated(data, tmp_path):
    copy = _copy(data, tmp_path)
    shard = copy / "shard_000.h5"
    raw = shard.read_bytes()
    shard.write_bytes(raw[: len(raw) // 2])
    return copy


def _flipped(data, tmp_path, episode="ep_000001"):
    """A copy whose episode ``episode`` has its first compressed rgb chunk overwritten."""
    copy = _copy(data, tmp_path)
    with h5py.File(copy / "shard_000.h5", "r") as f:
        offset = f[f"data/{episode}/obs/rgb"].id.get_chunk_info(0).byte_offset
    with open(copy / "shard_000.h5", "r+b") as f:
        f.seek(offset + 8)
        f.write(b"\xff" * 64)
    return copy


def test_robomimic_export_of_a_truncated_shard_names_it_and_leaves_no_partial(data, tmp_path, capsys):
    copy = _truncated(data, tmp_path)
    out = tmp_path / "view.hdf5"
    with pytest.raises(UnreadableFileError, match=f"{copy / 'shard_000.h5'}:data/ep_000000 cannot be read"):
        export_robomimic(copy, out)
    assert not out.exists() and not (tmp_path / "view.hdf5.partial").exists()
    assert cli(["data", "export", "format=robomimic", f"data={copy}", f"out={out}"]) == 2
    assert f"{copy / 'shard_000.h5'}:data/ep_000000 cannot be read" in capsys.readouterr().err
    assert not (tmp_path / "view.hdf5.partial").exists()


def test_lerobot_export_of_a_truncated_shard_names_it(data, tmp_path, capsys):
    copy = _truncated(data, tmp_path)
    out = tmp_path / "lr"
    assert cli(["data", "export", "format=lerobot", f"data={copy}", f"out={out}"]) == 2
    assert f"{copy / 'shard_000.h5'}:data/ep_000000 cannot be read" in capsys.readouterr().err
    assert not out.exists() and not (tmp_path / "lr.partial").exists()


def test_lerobot_export_of_a_damaged_episode_names_it_and_leaves_no_partial(data, tmp_path):
    pytest.importorskip("lerobot", reason="the lerobot extra is not installed")
    copy = _flipped(data, tmp_path)
    out = tmp_path / "lr"
    with pytest.raises(UnreadableFileError, match=f"{copy / 'shard_000.h5'}:data/ep_000001 cannot be read"):
        export_lerobot(copy, out)
    assert not out.exists() and not (tmp_path / "lr.partial").exists()


# ------------------------------------------------------------------------------------ export arguments
@pytest.mark.parametrize("words, named", [(["episodes=-1"], "--episodes"), (["episodes=0"], "--episodes"),
                                          (["episodes=two"], "--episodes"), (["flow=flase"], "--flow")])
def test_bad_episodes_or_flow_are_refused_naming_them(data, tmp_path, capsys, words, named):
    out = tmp_path / "lr"
    with pytest.raises(SystemExit) as e:
        cli(["data", "export", "format=lerobot", f"data={data}", f"out={out}", *words])
    assert e.value.code == 2
    assert f"argument {named}" in capsys.readouterr().err and not out.exists()
    with pytest.raises(ValueError, match="episodes must be a positive integer"):
        export_lerobot(data, out, episodes=-1)


def test_flow_false_and_episodes_are_read_as_given(data, tmp_path):
    pytest.importorskip("lerobot", reason="the lerobot extra is not installed")
    out = tmp_path / "lr"
    assert cli(["data", "export", "format=lerobot", f"data={data}", f"out={out}", "flow=False", "episodes=1"]) == 0
    info = json.loads((out / "meta" / "info.json").read_text())
    assert info["total_episodes"] == 1 and "next.flow" not in info["features"]


# ------------------------------------------------------------------------------------ export-encoder
def test_export_encoder_keeps_dots_in_the_name_and_makes_the_folder(small_encoder, tmp_path):
    encoder = small_encoder
    pytest.importorskip("safetensors", reason="the deploy extra is not installed")
    pytest.importorskip("onnx", reason="the deploy extra is not installed")
    for version in ("1.5", "1.6"):
        assert cli(["export-encoder", str(encoder), "--format", "safetensors", "--out",
                    str(tmp_path / f"run_v{version}")]) == 0
    assert sorted(p.name for p in tmp_path.iterdir()) == ["run_v1.5.json", "run_v1.5.safetensors",
                                                          "run_v1.6.json", "run_v1.6.safetensors"]
    assert json.loads((tmp_path / "run_v1.5.json").read_text())["weights"] == "run_v1.5.safetensors"
    nested = tmp_path / "new" / "folder"
    assert cli(["export-encoder", str(encoder), "--format", "safetensors", "--out",
                str(nested / "enc.safetensors")]) == 0  # a known suffix is replaced, not doubled
    assert sorted(p.name for p in nested.iterdir()) == ["enc.json", "enc.safetensors"]
    assert cli(["export-encoder", str(encoder), "--format", "onnx", "--out", str(nested / "v2.0.onnx")]) == 0
    assert (nested / "v2.0.onnx").exists()


def test_export_encoder_refuses_force_readings_below_one(small_encoder, tmp_path, capsys):
    encoder = small_encoder
    from mmrep.encoder import load_encoder
    from mmrep.formats.encoder_export import save_onnx

    with pytest.raises(SystemExit) as e:
        cli(["export-encoder", str(encoder), "--format", "onnx", "--out", str(tmp_path / "e"),
             "--force-readings", "0"])
    assert e.value.code == 2
    assert "argument --force-readings: must be at least 1" in capsys.readouterr().err
    with pytest.raises(ValueError, match="force_readings"):
        save_onnx(load_encoder(encoder), tmp_path / "e", force_readings=-3)
    assert list(tmp_path.iterdir()) == []


def test_export_names_strip_only_export_suffixes():
    from pathlib import Path

    from mmrep.formats.encoder_export import output_stem

    assert output_stem("runs/run_v1.5") == Path("runs/run_v1.5")  # a dot in the name stays
    assert output_stem("runs/enc.onnx") == output_stem("runs/enc.pt") == Path("runs/enc")  # as the encoder file
