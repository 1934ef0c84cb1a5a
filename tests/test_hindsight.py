"""The hindsight insertion label (from proprioception and contact only) and the head that learns it."""

import numpy as np
import pytest
import torch
from conftest import collect_small
from torch.utils.data import DataLoader

from mmrep.data import MultimodalDataset
from mmrep.data.hindsight import insertion_point
from mmrep.models import ModelConfig, MultimodalModel, compute_losses
from mmrep.models.losses import MetricAccumulator
from mmrep.models.multimodal import INSERTION_SCALE
from mmrep.probe import HoleReplay


def _track(z: list[float], contact_from: int | None) -> tuple[np.ndarray, np.ndarray]:
    proprio = np.zeros((len(z), 8), np.float32)
    proprio[:, 0] = np.linspace(0.60, 0.61, len(z))
    proprio[:, 1] = 0.02
    proprio[:, 2] = z
    contact = np.zeros((len(z), 3), np.int8)
    if contact_from is not None:
        contact[contact_from:, 1] = 1
    return proprio, contact


def test_insertion_point_is_the_lowest_tip_after_a_deep_drop_past_first_contact():
    proprio, contact = _track([0.10, 0.06, 0.04, 0.04, 0.035, 0.02, 0.025], contact_from=2)
    np.testing.assert_allclose(insertion_point(proprio, contact), proprio[5, :2])


def test_a_non_finite_reading_costs_no_label():
    proprio, contact = _track([0.10, 0.06, 0.04, 0.04, 0.035, 0.02, 0.025], contact_from=2)
    proprio[3, :3] = np.nan
    proprio[6, 2] = -np.inf
    np.testing.assert_allclose(insertion_point(proprio, contact), proprio[5, :2])


@pytest.mark.parametrize("z, contact_from", [
    ([0.10, 0.06, 0.04, 0.04, 0.035], 2),  # 5 mm below first contact: pressing on the rim, not in
    ([0.10, 0.06, 0.02, 0.01, 0.00], None),  # never touched the block: no evidence of a hole
])
def test_no_insertion_point_without_contact_and_a_deep_drop(z, contact_from):
    assert insertion_point(*_track(z, contact_from)) is None


@pytest.fixture(scope="module")
def data64(tmp_path_factory):
    return collect_small(tmp_path_factory.mktemp("hindsight"), episodes=6, max_steps=80)


def test_dataset_labels_match_the_replayed_hole_within_the_clearance(data64):
    """The label uses no privileged state, yet where it exists it lies within the peg's clearance of
    the true hole (replayed from the episode's seed); the samples carry offset = point - tip."""
    import h5py

    ds = MultimodalDataset(data64, split=None)
    found = [i for i, p in enumerate(ds.insertion) if p is not None]
    assert found, "the noisy expert should insert at least once in 6 episodes"
    replay = HoleReplay()
    try:
        for i in found:
            e = ds.episodes[i]
            with h5py.File(e.file, "r") as f:
                attrs = f[e.group].attrs
                hole = replay(attrs["env_config"], int(attrs["seed"]))
                assert bool(attrs["success"])
            assert np.linalg.norm(ds.insertion[i] - hole[:2]) < 0.002
    finally:
        replay.close()
    sample = ds[ds.index_of(found[0], 3)]
    np.testing.assert_allclose(sample["insertion_offset"].numpy(), ds.insertion[found[0]] - ds.proprio[found[0]][3, :2])
    assert float(sample["insertion_known"]) == 1.0
    missing = [i for i, p in enumerate(ds.insertion) if p is None]
    if missing:
        other = ds[ds.index_of(missing[0], 0)]
        assert float(other["insertion_known"]) == 0.0 and not other["insertion_offset"].any()


def test_insertion_head_exists_only_with_a_weight_and_ignores_unlabelled_samples(data64):
    batch = next(iter(DataLoader(MultimodalDataset(data64, split=None), batch_size=8, shuffle=True,
                                 generator=torch.Generator().manual_seed(0))))
    batch["insertion_known"] = torch.tensor([[1.0], [0.0]] * 4)
    torch.manual_seed(0)
    plain = MultimodalModel(ModelConfig(image_size=64)).eval()
    assert "insertion" not in plain(batch)
    assert not any(k.startswith("insertion_head") for k in plain.state_dict())
    model = MultimodalModel(ModelConfig(image_size=64, w_insertion=2.0)).eval()
    out = model(batch)
    terms = compute_losses(model.cfg, out, batch)
    known = batch["insertion_known"][:, 0] > 0
    expected = (out["insertion"] - batch["insertion_offset"] / INSERTION_SCALE)[known].abs().mean()
    torch.testing.assert_close(terms["insertion"], expected)
    moved = {**batch, "insertion_offset": batch["insertion_offset"] + (~known)[:, None].float()}
    torch.testing.assert_close(compute_losses(model.cfg, out, moved)["insertion"], terms["insertion"])
    without = compute_losses(ModelConfig(image_size=64), {k: v for k, v in out.items() if k != "insertion"}, batch)
    torch.testing.assert_close(terms["total"], without["total"] + 2.0 * terms["insertion"])
    acc = MetricAccumulator()
    acc.update(out, batch, terms)
    err = (out["insertion"].detach() * INSERTION_SCALE - batch["insertion_offset"]).norm(dim=1)[known].mean() * 1000
    assert acc.compute()["insertion_error_mm"] == pytest.approx(float(err), rel=1e-5)


def test_negative_insertion_weight_is_refused():
    with pytest.raises(ValueError, match="w_insertion"):
        ModelConfig(w_insertion=-1.0).validate()


def test_touch_insertion_reads_the_same_head_from_the_non_camera_experts_alone(data64):
    """w_insertion_touch: the insertion head on the product of the F/T and proprio experts, which is the
    posterior the model falls back to when the camera is left out; its own loss term and metric."""
    batch = next(iter(DataLoader(MultimodalDataset(data64, split=None), batch_size=8, shuffle=False)))
    batch["insertion_known"] = torch.ones(8, 1)
    torch.manual_seed(0)
    model = MultimodalModel(ModelConfig(image_size=64, w_insertion=1.0, w_insertion_touch=0.5)).eval()
    out = model(batch)
    blind = {**batch, "present_rgb": torch.zeros(8), "present_depth": torch.zeros(8)}
    torch.testing.assert_close(out["insertion_touch"], model(blind)["insertion"])  # the camera-less prediction
    assert not torch.allclose(out["insertion_touch"], out["insertion"])
    terms = compute_losses(model.cfg, out, batch)
    expected = (out["insertion_touch"] - batch["insertion_offset"] / INSERTION_SCALE).abs().mean()
    torch.testing.assert_close(terms["insertion_touch"], expected)
    acc = MetricAccumulator()
    acc.update(out, batch, terms)
    assert "insertion_touch_error_mm" in acc.compute()
    for bad in (dict(w_insertion_touch=-1.0), dict(w_insertion_touch=1.0),
                dict(w_insertion=1.0, w_insertion_touch=1.0, fusion="concat")):
        with pytest.raises(ValueError, match="w_insertion_touch"):
            ModelConfig(**bad).validate()
