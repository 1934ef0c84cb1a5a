"""A representation trained to survive missing and corrupted senses, and `mmrep evaluate`."""

import json
from pathlib import Path

import h5py
import numpy as np
import pytest
import torch
from conftest import collect_small
from torch.utils.data import DataLoader

from mmrep.cli import main
from mmrep.config import AugmentConfig, EvaluateConfig, train_config
from mmrep.data import MultimodalDataset
from mmrep.data.transforms import ROBUST_PERTURBATIONS, Corrupt, RandomCorruption
from mmrep.encoder import Encoder, load_encoder
from mmrep.evaluate import evaluate
from mmrep.models import ModelConfig, MultimodalModel, compute_losses
from mmrep.models.multimodal import product_of_experts
from mmrep.train import TrainConfig, train


@pytest.fixture(scope="module")
def data64(tmp_path_factory):
    return collect_small(tmp_path_factory.mktemp("robust64"), episodes=10, max_steps=30)


@pytest.fixture(scope="module")
def robust_run(data64, tmp_path_factory):
    out = tmp_path_factory.mktemp("robust_run")
    cfg = TrainConfig(data=str(data64), out=str(out), epochs=1, batch_size=16, num_workers=0, max_batches_per_epoch=4,
                      threads=1, progress=False, augment=AugmentConfig(prob=0.5),
                      model=ModelConfig(modality_dropout=0.3, alignment_input="experts"))
    train(cfg)
    return out


def test_product_of_experts_leaves_absent_experts_out():
    mus = [torch.full((2, 3), 2.0), torch.full((2, 3), -4.0)]
    logvars = [torch.zeros(2, 3), torch.zeros(2, 3)]
    present = [torch.tensor([1.0, 1.0]), torch.tensor([1.0, 0.0])]
    mu, logvar = product_of_experts(mus, logvars, present)
    # sample 0: prior, 2 and -4 with equal precision -> mean -2/3; sample 1: prior and 2 -> 1
    assert torch.allclose(mu[0], torch.full((3,), -2 / 3)) and torch.allclose(mu[1], torch.full((3,), 1.0))
    assert torch.allclose(logvar[1], torch.log(torch.full((3,), 0.5)))
    mu, logvar = product_of_experts(mus, logvars, [torch.zeros(2), torch.zeros(2)])
    assert torch.allclose(mu, torch.zeros(2, 3)) and torch.allclose(logvar, torch.zeros(2, 3))  # the prior


def test_product_of_experts_stays_finite_for_an_expert_past_float32s_precision():
    """An expert whose log-variance is below -88 (exp(-logvar) overflows float32; an input far outside
    training drives one there) made z NaN: inf / inf when present, inf x 0 when left out. It now
    dominates when present and counts for nothing when left out; every other entry is the direct
    product, bit for bit."""
    mus = [torch.full((2, 3), 2.0), torch.full((2, 3), -4.0)]
    logvars = [torch.zeros(2, 3), torch.full((2, 3), -200.0)]
    logvars[1][:, 0] = -7.0  # one entry in the range trained experts use
    mu, logvar = product_of_experts(mus, logvars)
    assert torch.isfinite(mu).all() and torch.isfinite(logvar).all()
    assert torch.allclose(mu[:, 1:], torch.full((2, 2), -4.0))
    assert torch.allclose(logvar[:, 1:], torch.full((2, 2), -200.0))
    precision = torch.exp(-torch.stack([torch.zeros(2), torch.zeros(2), torch.full((2,), -7.0)]))
    direct = (torch.stack([torch.zeros(2), torch.full((2,), 2.0), torch.full((2,), -4.0)]) * precision).sum(0)
    assert torch.equal(mu[:, 0], direct * (1.0 / precision.sum(0)))  # untouched entries: the direct product
    mu, _ = product_of_experts(mus, logvars, [torch.ones(2), torch.tensor([1.0, 0.0])])
    assert torch.allclose(mu[0, 1:], torch.full((2,), -4.0)) and torch.allclose(mu[1], torch.full((3,), 1.0))


@pytest.mark.parametrize("fusion", ["poe", "concat"])
def test_modality_dropout_trains_and_alignment_skips_imageless_samples(fusion, data64):
    cfg = ModelConfig(image_size=64, fusion=fusion, modality_dropout=0.5, alignment_input="experts" if fusion == "poe"
                      else "mean")
    model = MultimodalModel(cfg).train()
    batch = next(iter(DataLoader(MultimodalDataset(data64, "train"), batch_size=16)))
    torch.manual_seed(0)
    out = model(batch)
    terms = compute_losses(cfg, out, batch)
    terms["total"].backward()
    w = out["align_weight"][:, 0]
    assert 0 < w.sum() < len(w)  # some samples lost their image or both state senses
    if fusion == "concat":
        assert model.encoder.missing["rgb"].grad is not None  # the learned "missing" input is trained
    model.eval()
    a = model(batch)
    assert "align_weight" not in a  # no dropout at evaluation


def test_flow_needs_rgb_counts_only_the_samples_with_an_image(data64):
    ds = MultimodalDataset(data64, "train")
    batch = next(iter(DataLoader(ds, batch_size=6)))
    torch.manual_seed(0)
    model = MultimodalModel(ModelConfig(image_size=64, flow_needs_rgb=True, w_flow_moving=1.0)).eval()
    keep = torch.tensor([1.0, 1.0, 0.0, 1.0, 0.0, 1.0])
    with torch.no_grad():
        out = model({**batch, "present_rgb": keep})
        terms = compute_losses(model.cfg, out, batch)
        sub = {k: v[keep > 0] for k, v in batch.items()}
        sub_out = {k: v[keep > 0] for k, v in out.items() if k.startswith("flow") and k != "flow_weight"}
        sub_terms = compute_losses(ModelConfig(image_size=64, w_flow_moving=1.0), {**sub_out, "z": out["z"]}, sub)
    for key in ("flow_epe", "flow_mask", "flow_epe_moving"):
        assert terms[key] == pytest.approx(float(sub_terms[key]), rel=1e-5), key
    plain = MultimodalModel(ModelConfig(image_size=64, w_flow_moving=1.0)).eval()
    plain.load_state_dict(model.state_dict())
    with torch.no_grad():
        assert "flow_weight" not in plain({**batch, "present_rgb": keep})


def test_encode_accepts_an_absent_modality_or_a_mask(robust_run, data64):
    enc = load_encoder(robust_run / "encoder.pt")
    e, t = MultimodalDataset(data64, "valid").episodes[0], 3
    with h5py.File(e.file, "r") as f:
        obs = {k: f[e.group]["obs"][k][t] for k in ("rgb", "depth", "force", "proprio")}
    full = enc.encode(obs)
    blind = enc.encode({k: v for k, v in obs.items() if k not in ("rgb", "depth")})
    masked = enc.encode({k: v[None] for k, v in obs.items()}, present={"rgb": [False], "depth": [False]})[0]
    listed = enc.encode(obs, modalities=["force", "proprio"])
    assert torch.allclose(blind, masked, atol=1e-6) and torch.allclose(blind, listed, atol=1e-6)
    assert not torch.allclose(full, blind)
    logvars = enc.expert_logvars(obs)
    assert set(logvars) == {"rgb", "depth", "force", "proprio"} and all(v.shape == () for v in logvars.values())
    with pytest.raises(ValueError, match="holds none of this encoder's modalities"):
        enc.encode({"contact": np.zeros(50)})


def _batch_of_observations(data64, n: int = 6) -> dict[str, np.ndarray]:
    e = MultimodalDataset(data64, "valid").episodes[0]
    with h5py.File(e.file, "r") as f:
        return {k: f[e.group]["obs"][k][:n] for k in ("rgb", "depth", "force", "proprio")}


def test_trained_encoder_carries_reliability_thresholds_that_flag_and_reject(robust_run, data64):
    from mmrep.reliability import Reliability

    enc = load_encoder(robust_run / "encoder.pt")
    rel = enc.reliability
    assert rel is not None and set(rel.thresholds) == {"rgb", "depth", "force", "proprio"}
    assert rel.quantile == 0.99 and rel.samples > 0 and all(np.isfinite(list(rel.thresholds.values())))
    obs = _batch_of_observations(data64)
    flags = enc.flags(obs)
    assert set(flags) == set(rel.thresholds) and all(f.shape == (6,) and f.dtype == torch.bool for f in flags.values())
    # thresholds above everything flag nothing: reject changes nothing
    enc.reliability = Reliability({m: float("inf") for m in rel.thresholds})
    assert torch.equal(enc.encode(obs, reject=True), enc.encode(obs))
    # depth flagged in every sample: reject leaves it out, as an explicit mask does
    enc.reliability = Reliability({"depth": float("-inf")})
    assert bool(enc.flags({k: v[0] for k, v in obs.items()})["depth"])
    no_depth = enc.encode(obs, present={"depth": np.zeros(6, bool)})
    assert torch.allclose(enc.encode(obs, reject=True), no_depth, atol=1e-6)
    assert not torch.allclose(enc.encode(obs), no_depth)
    enc.reliability = None
    with pytest.raises(ValueError, match="no reliability thresholds"):
        enc.flags(obs)


def test_reliability_thresholds_are_the_clean_quantile_and_can_be_set_on_an_old_encoder(robust_run, data64,
                                                                                       tmp_path):
    from mmrep.encoder import export_encoder
    from mmrep.reliability import calibrate
    from mmrep.reliability import main as calibrate_main

    lv = {"rgb": np.arange(1000, dtype=np.float64), "force": np.array([np.nan, 1.0, 2.0])}
    rel = calibrate(lv, 0.9)
    assert (lv["rgb"] > rel.thresholds["rgb"]).mean() == pytest.approx(0.1, abs=0.002)
    assert rel.thresholds["force"] == pytest.approx(1.9) and rel.samples == 1000
    old = tmp_path / "encoder.pt"
    export_encoder(load_encoder(robust_run / "encoder.pt"), old)  # as written before thresholds existed
    assert load_encoder(old).reliability is None
    assert calibrate_main([str(old), str(data64), "--batches", "2", "--batch-size", "8"]) == 0
    set_now = load_encoder(old).reliability
    assert set(set_now.thresholds) == {"rgb", "depth", "force", "proprio"} and set_now.samples == 16
    concat = tmp_path / "concat.pt"
    export_encoder(Encoder(ModelConfig(image_size=64, fusion="concat")), concat)
    assert calibrate_main([str(concat), str(data64)]) == 2


def test_concat_encoder_uses_its_missing_vector():
    enc = Encoder(ModelConfig(image_size=64, fusion="concat", modality_dropout=0.1)).eval()
    with torch.no_grad():
        enc.missing["force"].fill_(1.0)
    obs = {"rgb": np.zeros((64, 64, 3), np.uint8), "depth": np.zeros((64, 64, 1), np.float32),
           "force": np.zeros((50, 6), np.float32), "proprio": np.zeros(13, np.float32)}
    without = enc.encode({k: v for k, v in obs.items() if k != "force"})
    enc.missing["force"].data.fill_(0.0)
    assert not torch.allclose(without, enc.encode({k: v for k, v in obs.items() if k != "force"}))


def test_transforms_perturb_positives_and_negatives_reproducibly(data64):
    ds = MultimodalDataset(data64, "train", transform=Corrupt(["force/dead:1"]))
    s = ds[5]
    assert not s["force"].any() and not s["force_neg"].any()
    ds = MultimodalDataset(data64, "train", transform=RandomCorruption(prob=1.0))
    clean = MultimodalDataset(data64, "train")
    a, b = ds[7], ds[7]
    for k in a:
        assert torch.equal(a[k], b[k])
    changed = sum(not torch.equal(ds[i][k], clean[i][k]) for i in range(20)
                  for k in ("rgb", "depth", "force", "proprio"))
    assert changed >= 8  # some perturbations act with probability p only
    assert not any("rotation" in n or "flip" in n or "crop" in n for n in ROBUST_PERTURBATIONS)


def test_robust_configs_compose():
    cfg = train_config(["model=robust", "augment=robust"])
    assert cfg.model.modality_dropout > 0 and cfg.augment.prob > 0 and cfg.model.alignment_input == "experts"
    with pytest.raises(ValueError, match="augment.perturbations: unknown"):
        train_config(["augment.perturbations=[rgb/blur]"])


def test_evaluate_writes_numbers_report_and_plots_deterministically(robust_run, data64, tmp_path):
    cfg = EvaluateConfig(runs=[f"robust:{robust_run}"], data=str(data64), out=str(tmp_path / "a"),
                         perturbations=["force/dead", "rgb/occlusion_zeros", "rgb/absent"], levels=[0.0, 0.5, 0.9],
                         episodes=1, calibration_episodes=1, batch_size=32, progress=False)
    summary = evaluate(cfg)
    rows = {(r["perturbation"], r["p"]): r for r in summary["results"]}
    assert set(rows) >= {("clean", 0.0), ("force/dead", 0.9), ("rgb/occlusion_zeros", 0.5), ("rgb/absent", 0.0)}
    assert rows[("force/dead", 0.0)]["contact_f1"] == rows[("clean", 0.0)]["contact_f1"]
    assert "flagged/force" in rows[("force/dead", 0.9)]
    out = tmp_path / "a"
    report = (out / "report.md").read_text()
    assert "force/dead" in report and "contact_f1.png" in report
    for name in ("contact_f1.png", "alignment_accuracy.png", "results.json"):
        assert (out / name).stat().st_size > 1000
    assert json.loads((out / "results.json").read_text())["provenance"]["packages"]["torch"]  # traced
    again = evaluate(EvaluateConfig(**{**cfg.__dict__, "out": str(tmp_path / "b")}))
    strip = [{k: v for k, v in r.items()} for r in again["results"]]
    assert strip == summary["results"]


def test_evaluate_reuses_clean_image_experts_for_state_perturbations_exactly(robust_run, data64):
    from mmrep.evaluate import HeldOut, keeps_images, load_model, run_setting

    assert keeps_images("force/bias") and keeps_images("rgb/absent") and not keeps_images("rgb/occlusion_zeros")
    model = load_model(Path(robust_run))
    held = HeldOut(str(data64), episodes=2, calibration=0, seed=0)
    cache: list = []
    run_setting(model, held.batches(held.eval_index, 8), None, 0, None, cache)  # clean: records
    assert len(cache) == -(-len(held.eval_index) // 8)
    for name, absent in (("force/taps", None), ("proprio/absent", ("proprio", 0.5))):
        transform = None if absent else Corrupt([f"{name}:0.9"], held.stats)
        direct, _ = run_setting(model, held.batches(held.eval_index, 8, transform), absent, 3, None)
        reused, _ = run_setting(model, held.batches(held.eval_index, 8, transform), absent, 3, None, cache)
        assert reused == pytest.approx(direct, rel=1e-6, abs=1e-7), name


def test_evaluations_run_apart_merge_into_the_joint_evaluation(robust_run, data64, tmp_path):
    from mmrep.evaluate import merge_summaries, write_outputs

    common = dict(data=str(data64), levels=[0.0, 0.5], episodes=1, calibration_episodes=1, batch_size=32,
                  progress=False)
    joint = evaluate(EvaluateConfig(runs=[f"a:{robust_run}", f"b:{robust_run}"], out=str(tmp_path / "joint"),
                                    perturbations=["force/dead", "rgb/absent"], **common))
    # b alone with another grid: "rgb/absent" sits at another place in it, and draws the same samples
    part_a = evaluate(EvaluateConfig(runs=[f"a:{robust_run}"], out=str(tmp_path / "a"),
                                     perturbations=["force/dead", "rgb/absent"], **common))
    part_b = evaluate(EvaluateConfig(runs=[f"b:{robust_run}"], out=str(tmp_path / "b"),
                                     perturbations=["rgb/absent"], **common))
    merged = merge_summaries([part_a, part_b])
    key = lambda r: (r["model"], r["perturbation"], r["p"])  # noqa: E731
    joint_rows = {key(r): r for r in joint["results"]}
    assert {key(r) for r in merged["results"]} <= set(joint_rows)
    for r in merged["results"]:
        assert r == joint_rows[key(r)], key(r)
    write_outputs(merged, tmp_path / "merged")
    report = (tmp_path / "merged" / "report.md").read_text()
    assert "| rgb/absent | b |" in report and "| force/dead | a |" in report
    with pytest.raises(ValueError, match="label"):
        merge_summaries([part_a, part_a])
    other = evaluate(EvaluateConfig(**{**common, "episodes": 2}, runs=[f"c:{robust_run}"], out=str(tmp_path / "c")))
    with pytest.raises(ValueError, match="episodes"):
        merge_summaries([part_a, other])


def test_evaluate_reject_leaves_flagged_experts_out(robust_run, data64, tmp_path):
    from mmrep.evaluate import HeldOut, load_model, run_setting

    model = load_model(Path(robust_run))
    held = HeldOut(str(data64), episodes=2, calibration=0, seed=0)
    always_depth = {"depth": float("-inf"), "rgb": float("inf")}
    rejected, _ = run_setting(model, held.batches(held.eval_index, 8), None, 0, None, reject=always_depth)
    absent, _ = run_setting(model, held.batches(held.eval_index, 8), ("depth", 1.0), 0, None)
    assert rejected == pytest.approx(absent, rel=1e-6, abs=1e-7)
    clean, _ = run_setting(model, held.batches(held.eval_index, 8), None, 0, None)
    assert rejected != pytest.approx(clean, rel=1e-6, abs=1e-7)
    summary = evaluate(EvaluateConfig(runs=[f"robust:{robust_run}"], data=str(data64), out=str(tmp_path / "r"),
                                      perturbations=["depth/missing"], levels=[0.0, 0.9], episodes=1,
                                      calibration_episodes=1, batch_size=32, progress=False, reject=True))
    assert set(summary["models"]) == {"robust", "robust+reject"}
    got = {(r["model"], r["perturbation"], r["p"]) for r in summary["results"]}
    assert ("robust+reject", "depth/missing", 0.9) in got and ("robust+reject", "clean", 0.0) in got


def test_evaluate_runs_are_named_label_colon_path_on_the_command_line():
    from mmrep.config import app_config, compose
    from mmrep.evaluate import parse_run

    cfg = app_config(compose("evaluate", ["runs=[plain:runs/a,runs/b]"]))
    assert [parse_run(r) for r in cfg.runs] == [("plain", Path("runs/a")), ("b", Path("runs/b"))]


def test_evaluate_cli_refuses_bad_input(tmp_path, capsys):
    assert main(["evaluate", "runs=[nowhere]", f"out={tmp_path / 'e'}", "perturbations=[rgb/blur]"]) == 2
    assert "rgb/blur" in capsys.readouterr().err
    assert not (tmp_path / "e").exists()
    assert main(["evaluate", f"runs=[{tmp_path}]", f"out={tmp_path / 'e'}", "progress=false"]) == 2
    assert "last.pt" in capsys.readouterr().err


def test_evaluate_refuses_data_at_another_image_size_and_reject_without_calibration(robust_run, data64, tmp_path):
    from sim.collect import CollectConfig, collect

    big = tmp_path / "data128"  # the run was trained on 64 px images
    collect(CollectConfig(episodes=2, out=str(big), env={"max_steps": 12, "image_size": 128}, workers=1,
                          policies={"contact_seeking": 1.0}), progress=False)
    with pytest.raises(ValueError, match=r"trained on 64 px images but the images of .*data128 are 128 px"):
        evaluate(EvaluateConfig(runs=[str(robust_run)], data=str(big), out=str(tmp_path / "a"), split="all",
                                episodes=1, calibration_episodes=1, batch_size=8, progress=False))
    with pytest.raises(ValueError, match="reject=true needs calibration episodes"):
        evaluate(EvaluateConfig(runs=[str(robust_run)], data=str(data64), out=str(tmp_path / "b"), split="all",
                                episodes=10, calibration_episodes=1, batch_size=8, progress=False, reject=True))
    assert not (tmp_path / "a" / "results.json").exists() and not (tmp_path / "b" / "results.json").exists()
