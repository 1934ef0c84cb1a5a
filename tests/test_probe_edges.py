"""The probe CLI's edges (python -m mmrep.probe): one label per encoder, and bad input answered with
``python -m mmrep.probe: error: ...`` (exit 2) naming the file, not a traceback."""

import json

import pytest
import torch
from conftest import collect_small

from mmrep.encoder import export_encoder
from mmrep.models import ModelConfig
from mmrep.models.multimodal import MultimodalEncoder
from mmrep.probe import encoder_labels, main

PREFIX = "python -m mmrep.probe: error:"


@pytest.fixture(scope="module")
def data(tmp_path_factory):
    return collect_small(tmp_path_factory.mktemp("probe_edges"), episodes=3, max_steps=12)


@pytest.fixture(scope="module")
def encoders(tmp_path_factory):
    """Two encoder files named alike in two run folders (run_a/encoder.pt, run_b/encoder.pt)."""
    root = tmp_path_factory.mktemp("runs")
    paths = []
    for seed, run in enumerate(("run_a", "run_b")):
        torch.manual_seed(seed)
        (root / run).mkdir()
        export_encoder(MultimodalEncoder(ModelConfig(image_size=64, z_dim=8)), root / run / "encoder.pt")
        paths.append(root / run / "encoder.pt")
    return paths


def exits_with_error(capsys, argv) -> str:
    with pytest.raises(SystemExit) as e:
        main(argv)
    assert e.value.code == 2
    err = capsys.readouterr().err
    assert PREFIX in err and "Traceback" not in err
    return err


def test_unlabelled_encoders_with_one_stem_are_labelled_by_their_run_folders(data, encoders, tmp_path):
    a, b = encoders
    assert encoder_labels([str(a), str(b)]) == {"run_a": str(a), "run_b": str(b)}
    assert encoder_labels([str(a), f"random:{b}"]) == {"run_a": str(a), "random:run_b": f"random:{b}"}
    assert encoder_labels([f"x={a}", str(b)]) == {"x": str(a), "encoder": str(b)}  # no clash: stems kept
    main([str(data), str(a), str(b), "--epochs", "1", "--max-episodes", "1", "--out", str(tmp_path / "out")])
    result = json.loads((tmp_path / "out" / "probe.json").read_text())
    assert result["encoders"] == {"run_a": str(a), "run_b": str(b)}  # both probed, neither dropped
    assert {r.get("encoder") for r in result["results"]} == {None, "run_a", "run_b"}


def test_repeated_labels_are_refused_naming_them(data, encoders, capsys):
    a, b = encoders
    with pytest.raises(ValueError, match=r"repeated: \['x'\]"):
        encoder_labels([f"x={a}", f"x={b}"])
    assert "['x']" in exits_with_error(capsys, [str(data), f"x={a}", f"x={b}"])
    with pytest.raises(ValueError, match=r"repeated: \['run_a'\]"):  # the same file twice, unlabelled
        encoder_labels([str(a), str(a)])
    assert list(encoder_labels([str(a), f"{a}@force"])) == ["run_a", "run_a@force"]  # read by other experts


def test_bad_input_is_an_error_line_naming_the_file(data, encoders, tmp_path, capsys):
    a, _ = encoders
    out = ["--epochs", "1", "--max-episodes", "1", "--out", str(tmp_path / "out")]
    not_an_encoder = tmp_path / "last.pt"
    torch.save({"state": "{}"}, not_an_encoder)
    assert str(not_an_encoder) in exits_with_error(capsys, [str(data), str(not_an_encoder), *out])
    missing = tmp_path / "no_dataset"
    assert str(missing) in exits_with_error(capsys, [str(missing), str(a), *out])
    a_file = tmp_path / "a_file"
    a_file.write_text("")
    assert str(a_file) in exits_with_error(capsys, [str(data), str(a), "--out", str(a_file)])


def test_a_dataset_without_valid_episodes_or_of_another_image_size(encoders, tmp_path, capsys):
    a, _ = encoders
    one = collect_small(tmp_path / "one", episodes=1, max_steps=8)
    assert "no episodes in split 'valid'" in exits_with_error(capsys, [str(one), str(a), "--out", str(tmp_path / "o")])
    torch.manual_seed(0)
    big = tmp_path / "enc128.pt"
    export_encoder(MultimodalEncoder(ModelConfig(image_size=128, z_dim=8)), big)
    data64 = collect_small(tmp_path / "d64", episodes=3, max_steps=8)
    err = exits_with_error(capsys, [str(data64), str(big), "--epochs", "1", "--out", str(tmp_path / "o")])
    assert str(big) in err and "rgb" in err


def test_labels_keep_the_order_given_and_a_modality_suffix_makes_its_own():
    from mmrep.probe import encoder_labels

    labels = encoder_labels(["x=runs/a/encoder.pt", "runs/b/encoder.pt", "runs/b/encoder.pt@force,proprio", "y=c.pt"])
    assert list(labels) == ["x", "b", "b@force,proprio", "y"]  # rows of the table in the order typed
