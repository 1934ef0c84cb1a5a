"""Probes of what z carries (mmrep.probe): labels replayed from the episode seeds, probes that learn,
the outputs."""

import json

import imageio
import numpy as np
import pytest
import torch
from conftest import collect_small

from mmrep.encoder import export_encoder
from mmrep.models import ModelConfig
from mmrep.models.multimodal import MultimodalEncoder
from mmrep.probe import ProbeConfig, fit_probe, load_steps, predict, run_probes


@pytest.fixture(scope="module")
def data(tmp_path_factory):
    return collect_small(tmp_path_factory.mktemp("probe64"), episodes=6, max_steps=25)


def test_offsets_are_the_tip_to_hole_vector_of_the_replayed_episode(data):
    steps = load_steps(data, "train", ("proprio",))
    first = steps.episode == 0
    # at reset the tip starts 10-16 cm above the block top and within 6 + 5 cm of the hole on x and y
    assert 0.09 < steps.offset[first][0, 2] < 0.17 and np.all(np.abs(steps.offset[first][0, :2]) < 0.12)
    # offsets change only by the tip's motion: the hole does not move within an episode
    motion = np.diff(steps.obs["proprio"][first][:, :3], axis=0)
    np.testing.assert_allclose(np.diff(steps.offset[first], axis=0), motion, atol=1e-6)
    assert set(np.unique(steps.contact)) <= {0.0, 1.0}


def test_probe_learns_a_linear_target():
    rng = np.random.default_rng(0)
    x = rng.normal(size=(2000, 5)).astype(np.float32)
    y = (x[:, :2] * 10).astype(np.float32)
    net = fit_probe(x[:1500], y[:1500], "regression", ProbeConfig(epochs=30))
    err = np.abs(predict(net, x[1500:]) - y[1500:]).mean()
    assert err < 0.5  # the targets' spread is 10


def test_run_probes_writes_every_feature_set(data, tmp_path):
    torch.manual_seed(0)
    enc = tmp_path / "encoder.pt"
    export_encoder(MultimodalEncoder(ModelConfig(image_size=64, z_dim=8)), enc)
    result = run_probes(data, {"random": str(enc)}, tmp_path / "out", ProbeConfig(epochs=2))
    assert [(r.get("encoder"), r["features"]) for r in result["results"]] == [
        (None, "proprio"), (None, "ft+proprio"), ("random", "z"), ("random", "z+proprio")]
    assert all(r["offset_mm_median"] > 0 and 0 <= r["contact_f1"] <= 1 for r in result["results"])
    assert json.loads((tmp_path / "out" / "probe.json").read_text())["valid_samples"] == result["valid_samples"]
    assert "z+proprio" in (tmp_path / "out" / "probe.md").read_text()
    valid = load_steps(data, "valid", ("proprio",))
    zero = np.median(np.linalg.norm(valid.offset[:, :2], axis=1)) * 1000  # the hole right under the tip
    assert result["zero_offset"]["offset_mm_median"] == pytest.approx(zero, rel=1e-6)
    assert "zero offset (baseline)" in (tmp_path / "out" / "probe.md").read_text()
    image = imageio.v3.imread(tmp_path / "out" / "probe.png")  # the figure: a bar per feature set
    assert image.ndim == 3 and image.shape[0] > 100 and image.std() > 0


def test_a_modality_suffix_probes_the_product_of_those_experts_alone(data, tmp_path):
    """``PATH@force,proprio``: z of the touch experts alone (the camera left out of the product), which is
    not the z of every modality."""
    torch.manual_seed(0)
    enc = tmp_path / "encoder.pt"
    export_encoder(MultimodalEncoder(ModelConfig(image_size=64, z_dim=8)), enc)
    both = run_probes(data, {"all": str(enc), "touch": f"{enc}@force,proprio"}, tmp_path / "out",
                      ProbeConfig(epochs=2), with_proprio=False, max_episodes=2)
    medians = {r.get("encoder"): r["offset_mm_median"] for r in both["results"]}
    assert medians["all"] != medians["touch"]
    with pytest.raises(SystemExit, match="unknown modalities"):
        from mmrep.probe import main

        main([str(data), f"x={enc}@force,touch"])


def test_random_spec_probes_the_architecture_with_fresh_weights(tmp_path):
    from mmrep.encoder import load_encoder
    from mmrep.probe import load_probed_encoder

    torch.manual_seed(1)  # random_like draws with seed 0: these weights stand for trained ones
    path = tmp_path / "encoder.pt"
    export_encoder(MultimodalEncoder(ModelConfig(image_size=64, z_dim=8)), path)
    trained, fresh = load_encoder(path), load_probed_encoder(f"random:{path}")
    again = load_probed_encoder(f"random:{path}")
    params = lambda e: torch.cat([p.flatten() for p in e.parameters()])  # noqa: E731
    assert params(trained).shape == params(fresh).shape
    assert not torch.equal(params(trained), params(fresh))
    assert torch.equal(params(fresh), params(again))  # seeded: the same random row every time


def test_contact_f1_counts_match_the_training_metric_and_handle_no_positives():
    from mmrep.models.losses import f1_from_counts

    assert f1_from_counts(3, 1, 1) == pytest.approx(0.75)
    assert f1_from_counts(0, 0, 0) == 1.0  # nothing to find, nothing claimed
    assert f1_from_counts(0, 2, 0) == 0.0
