"""Training: every model config runs, CPU determinism, kill-and-resume, reference data, encoder export."""

import dataclasses
import json
import os
import subprocess
import sys
import time
from pathlib import Path

import gymnasium as gym
import numpy as np
import pytest
import torch
from conftest import collect_small, kill_at_step
from torch.utils.data import DataLoader

import mmrep
from mmrep.cli import main
from mmrep.config import config_dir, train_config
from mmrep.data import MultimodalDataset
from mmrep.models import ModelConfig, MultimodalModel, compute_losses
from mmrep.train import TrainConfig, load_checkpoint, train
from sim.provenance import read_provenance
from sim.reference_layout import export_reference

MODEL_CONFIGS = sorted(p.stem for p in (config_dir() / "model").glob("*.yaml"))


@pytest.fixture(scope="module")
def data64(tmp_path_factory):
    return collect_small(tmp_path_factory.mktemp("data64"), episodes=5, max_steps=55)


def _cfg(data, out, **kw):
    base = dict(data=str(data), out=str(out), epochs=2, batch_size=16, num_workers=0, ckpt_every_steps=3,
                max_batches_per_epoch=6, threads=1)
    return TrainConfig(**{**base, **kw})


@pytest.mark.parametrize("name", MODEL_CONFIGS)
def test_every_model_config_trains_a_step(name, data64):
    cfg = train_config([f"model={name}"])
    model_cfg = dataclasses.replace(cfg.model, image_size=64)
    model = MultimodalModel(model_cfg)
    batch = next(iter(DataLoader(MultimodalDataset(data64, "train"), batch_size=4)))
    out = model(batch)
    terms = compute_losses(model_cfg, out, batch)
    terms["total"].backward()
    assert torch.isfinite(terms["total"])
    assert ("flow" in out) == model_cfg.flow and ("align_logit" in out) == model_cfg.alignment
    assert ("mu" in out) == (model_cfg.fusion == "poe")
    grads = [p.grad for p in model.parameters() if p.grad is not None]
    assert grads and all(torch.isfinite(g).all() for g in grads)


def test_endpoint_error_is_the_euclidean_flow_error_with_finite_gradients():
    from mmrep.models.losses import endpoint_error

    pred = torch.zeros(2, 2, 4, 4, requires_grad=True)
    target = torch.zeros(2, 2, 4, 4)
    target[0, 0], target[0, 1] = 3.0, 4.0  # 5 px everywhere in sample 0, 0 in sample 1
    assert endpoint_error(pred, target).item() == pytest.approx(2.5)
    mask = torch.zeros(2, 1, 4, 4)
    mask[0] = 1.0
    assert endpoint_error(pred, target, mask).item() == pytest.approx(5.0)
    endpoint_error(pred, torch.zeros_like(target)).backward()  # zero error: the norm's kink
    assert torch.isfinite(pred.grad).all()
    x, y = torch.randn(3, 2, 8, 8), torch.randn(3, 2, 8, 8)
    torch.testing.assert_close(endpoint_error(x, y), torch.linalg.vector_norm(x - y, dim=1).mean())


def test_moving_pixel_flow_term_adds_its_weighted_masked_error(data64):
    from mmrep.models.losses import endpoint_error

    batch = next(iter(DataLoader(MultimodalDataset(data64, "train"), batch_size=4)))
    torch.manual_seed(0)
    model = MultimodalModel(ModelConfig(image_size=64)).eval()
    out = model(batch)
    plain = compute_losses(model.cfg, out, batch)
    weighted = compute_losses(ModelConfig(image_size=64, w_flow_moving=2.0), out, batch)
    moving = endpoint_error(out["flow"], batch["flow"], batch["flow_mask"])
    assert "flow_epe_moving" not in plain and weighted["flow_epe_moving"] == moving
    torch.testing.assert_close(weighted["total"], plain["total"] + 2.0 * moving)


def test_cpu_training_is_deterministic(data64, tmp_path):
    a = train(_cfg(data64, tmp_path / "a"), progress=False)
    b = train(_cfg(data64, tmp_path / "b"), progress=False)
    timing = ("train_seconds",)
    assert {k: v for k, v in a["final"].items() if k not in timing} == \
        {k: v for k, v in b["final"].items() if k not in timing}  # bit-identical, not merely close
    for key in ("flow_epe_moving_px", "alignment_accuracy", "contact_f1", "ee_mse", "kl", "loss/total"):
        assert key in a["final"], key
    assert (tmp_path / "a" / "best.pt").exists() and (tmp_path / "a" / "tb").is_dir()


def _close(x, y, tol):
    return all(abs(x[k] - y[k]) <= tol * max(1.0, abs(x[k])) for k in x if k != "train_seconds")


_TRAIN_SCRIPT = """
import sys
import time
from mmrep.train import TrainConfig, train
train(TrainConfig(data=sys.argv[1], out=sys.argv[2], epochs=3, batch_size=16, num_workers=0,
                  ckpt_every_steps=1, max_batches_per_epoch=6, threads=1), progress=False)
"""


def test_sigkill_then_resume_matches_uninterrupted(data64, tmp_path):
    reference = train(_cfg(data64, tmp_path / "ref", epochs=3, ckpt_every_steps=1), progress=False)
    out = tmp_path / "killed"
    proc = subprocess.Popen([sys.executable, "-c", _TRAIN_SCRIPT, str(data64), str(out)])
    kill_at_step(proc, out, 8)  # mid epoch 2
    resumed = train(_cfg(data64, out, epochs=3, ckpt_every_steps=1), progress=False)
    starts = read_provenance(out)  # the killed start and the resume, each with the epoch it began in
    assert [r["app"] for r in starts] == ["train", "train"] and starts[0]["epoch"] == 0 < starts[1]["epoch"]
    # Documented tolerance: identical on the CPU (same order, negatives, RNG state, deterministic ops).
    assert _close(resumed["final"], reference["final"], 1e-6), (resumed["final"], reference["final"])


def test_resume_with_other_settings_is_refused(data64, tmp_path):
    train(_cfg(data64, tmp_path, epochs=1), progress=False)
    with pytest.raises(ValueError, match=r"another configuration \(lr differ\)"):
        train(_cfg(data64, tmp_path, epochs=1, lr=1e-3), progress=False)


def test_a_project_moved_with_its_run_and_data_resumes(data64, tmp_path, monkeypatch):
    import shutil

    project = tmp_path / "projA"
    shutil.copytree(data64, project / "data")
    monkeypatch.chdir(project)
    train(_cfg(Path("data"), Path("runs/r"), epochs=1), progress=False)  # relative paths, as users type them
    project.rename(tmp_path / "projB")  # the project moved (or copied to a node's scratch)
    monkeypatch.chdir(tmp_path / "projB")
    result = train(_cfg(Path("data"), Path("runs/r"), epochs=1, progress=True), progress=False)  # bars: no matter
    assert result["final"]["epoch"] == 1  # resumed from the moved checkpoint, not refused
    elsewhere = tmp_path / "copy_of_data"  # the same episodes at another path: the fingerprint says so
    shutil.copytree(tmp_path / "projB" / "data", elsewhere)
    assert train(_cfg(elsewhere, Path("runs/r"), epochs=1), progress=False)["final"]["epoch"] == 1
    checkpoint = json.loads(load_checkpoint(Path("runs/r/last.pt"))["config"])
    assert checkpoint["out"] == "runs/r" and checkpoint["data"] == "data"  # recorded as every version did


def test_runs_written_before_new_options_existed_still_resume(data64, tmp_path):
    train(_cfg(data64, tmp_path, epochs=1), progress=False)
    ckpt = load_checkpoint(tmp_path / "last.pt")
    old = json.loads(ckpt["config"])
    del old["augment"], old["model"]["modality_dropout"]  # options added later, off by default
    ckpt["config"] = json.dumps(old)
    torch.save(ckpt, tmp_path / "last.pt")
    assert train(_cfg(data64, tmp_path, epochs=1), progress=False)["final"]["epoch"] == 1
    with pytest.raises(ValueError, match="another configuration"):
        train(_cfg(data64, tmp_path, epochs=1, model=ModelConfig(modality_dropout=0.2)), progress=False)


def test_trains_on_reference_layout(data64, tmp_path):
    export_reference(data64, tmp_path / "ref")
    result = train(_cfg(tmp_path / "ref", tmp_path / "run", epochs=1), progress=False)
    assert np.isfinite(result["final"]["loss/total"])


def test_exported_encoder_encodes_a_live_env_observation(data64, tmp_path):
    train(_cfg(data64, tmp_path, epochs=1), progress=False)
    encoder = mmrep.load_encoder(tmp_path / "encoder.pt")
    env = gym.make("mmrep/PegInsertion-v0", image_size=64)
    obs, _ = env.reset(seed=0)
    obs2, *_ = env.step(env.action_space.sample())
    env.close()
    z = encoder.encode(obs)
    assert z.shape == (128,) and torch.isfinite(z).all()
    batched = {k: np.stack([obs[k], obs2[k]]) for k in obs}
    zb = encoder.encode(batched)
    assert zb.shape == (2, 128) and torch.allclose(zb[0], z, atol=1e-5)
    assert not torch.allclose(zb[0], zb[1])
    blob = torch.load(tmp_path / "encoder.pt", weights_only=True)
    assert not any(k.startswith(("flow_decoder", "contact_head")) for k in blob["state_dict"])


def test_load_encoder_rejects_other_files(tmp_path):
    torch.save({"something": torch.zeros(1)}, tmp_path / "x.pt")
    with pytest.raises(ValueError, match="not an mmrep encoder"):
        mmrep.load_encoder(tmp_path / "x.pt")


@pytest.mark.parametrize("override, name", [("epochs=0", "epochs"), ("model.fusion=sum", "fusion"),
                                            ("model.flow=true", "model.flow"), ("device=tpu", "device"),
                                            ("model.alignment_input=z", "alignment_input"),
                                            ("lr_schedule=step", "lr_schedule")])
def test_bad_train_config_names_the_field(override, name, capsys):
    extra = ["model.rgb=false"] if override == "model.flow=true" else []
    assert main(["train", override, *extra]) == 2
    assert name in capsys.readouterr().err


def test_proprio_is_standardised_with_training_statistics(data64, tmp_path):
    train(_cfg(data64, tmp_path, epochs=1), progress=False)
    proprio = np.concatenate(MultimodalDataset(data64, "train").proprio)
    blob = torch.load(tmp_path / "encoder.pt", weights_only=True)["state_dict"]
    assert np.allclose(blob["encoders.proprio.mean"].numpy(), proprio.mean(0), atol=1e-5)
    assert np.allclose(blob["encoders.proprio.std"].numpy(), proprio.std(0, ddof=1).clip(1e-3), rtol=1e-4)
    # the encoder standardises by its buffers: shifting and scaling input and statistics alike
    # leaves the proprioception expert unchanged, and other statistics change z
    encoder = mmrep.load_encoder(tmp_path / "encoder.pt")
    enc = encoder.encoders["proprio"]
    p = torch.from_numpy(proprio[:3].astype(np.float32))
    mean, std = enc.mean.clone(), enc.std.clone()
    expert = enc(p)[0]
    enc.set_stats(2 * mean + 1, 2 * std)
    assert torch.allclose(enc(2 * p + 1)[0], expert, atol=1e-5)
    assert not torch.allclose(enc(p)[0], expert, atol=1e-3)


def test_force_summary_reads_the_standardised_step_mean(data64, tmp_path):
    from mmrep.models.experts import ForceEncoder

    cfg = _cfg(data64, tmp_path, epochs=1)
    cfg.model.force_summary = True
    train(cfg, progress=False)
    ds = MultimodalDataset(data64, "train")
    force = [ds.source.read(e, "force", slice(None)) for e in ds.episodes]
    summary = np.concatenate([np.concatenate([f.mean(axis=1), f[:, -1]], axis=1) for f in force])
    blob = torch.load(tmp_path / "encoder.pt", weights_only=True)["state_dict"]
    assert np.allclose(blob["encoders.force.mean"].numpy(), summary.mean(0), atol=1e-4)
    assert np.allclose(blob["encoders.force.std"].numpy(), summary.std(0, ddof=1).clip(1e-3), rtol=1e-3)
    encoder = mmrep.load_encoder(tmp_path / "encoder.pt")  # the switch travels with the weights
    enc = encoder.encoders["force"]
    assert enc.summary is not None
    # the branch is in the expert's output: without it the mean changes
    window = torch.from_numpy(force[0][-4:].astype(np.float32))
    mu = enc(window)[0]
    with torch.no_grad():
        enc.summary[-1].weight.zero_()
        enc.summary[-1].bias.zero_()
    assert not torch.allclose(enc(window)[0], mu, atol=1e-4)
    # off by default, and a default encoder has no statistics to set
    plain = ForceEncoder(8)
    assert plain.summary is None and "mean" not in plain.state_dict()
    with pytest.raises(ValueError, match="summary"):
        plain.set_stats(torch.zeros(12), torch.ones(12))
    with pytest.raises(ValueError, match="force_summary"):
        ModelConfig(force=False, force_summary=True).validate()
    # weights of another shape than the config builds (a 6-wide summary): refused, naming the file
    whole = torch.load(tmp_path / "encoder.pt", weights_only=True)
    whole["state_dict"]["encoders.force.mean"] = torch.zeros(6)
    torch.save(whole, tmp_path / "odd.pt")
    with pytest.raises(ValueError, match="odd.pt"):
        mmrep.load_encoder(tmp_path / "odd.pt")


def test_cosine_learning_rate_decays_to_five_percent():
    from mmrep.train import learning_rate

    cfg = TrainConfig(lr=1e-3, epochs=2, lr_schedule="cosine")
    assert learning_rate(cfg, 0, 50) == pytest.approx(1e-3)
    assert learning_rate(cfg, 50, 50) == pytest.approx(0.525e-3)
    assert learning_rate(cfg, 100, 50) == pytest.approx(0.05e-3)
    assert learning_rate(TrainConfig(lr=1e-3), 70, 50) == 1e-3
    with pytest.raises(ValueError, match="lr_schedule"):
        TrainConfig(lr_schedule="step").validate()


def test_quality_experiment_composes():
    cfg = train_config(["experiment=quality"])
    assert cfg.model.fusion == "concat" and cfg.lr_schedule == "cosine" and cfg.epochs == 10
    cfg.validate()


def test_ablation_table_is_one_multirun_then_a_table(data64, tmp_path):
    out = tmp_path / "abl"
    assert main(["train", "-m", "model=full,no_flow", f"data={data64}", f"out={out}", "epochs=1",
                 "max_batches_per_epoch=2", "max_val_batches=1", "batch_size=8", "threads=1",
                 "progress=false"]) == 0
    assert sorted(p.name for p in out.iterdir() if p.is_dir()) == ["0_full", "1_no_flow"]
    cmd = [sys.executable, "benchmarks/ablations.py", str(out), "--json", str(tmp_path / "a.json")]
    subprocess.run(cmd, check=True, capture_output=True, cwd=os.path.dirname(os.path.dirname(__file__)))
    report = json.loads((tmp_path / "a.json").read_text())
    assert list(report["results"]) == ["full", "no_flow"]
    assert "flow_epe_moving_px" in report["results"]["full"]
    assert "flow_epe_moving_px" not in report["results"]["no_flow"]
    assert "| no_flow |" in (out / "ablations.md").read_text()


@pytest.mark.parametrize("alignment_input", ["mean", "sample"])
def test_alignment_head_reads_the_posterior_mean_or_a_sample(alignment_input, data64):
    model = MultimodalModel(ModelConfig(image_size=64, alignment_input=alignment_input)).train()
    batch = next(iter(DataLoader(MultimodalDataset(data64, "train"), batch_size=4)))
    a, b = model(batch), model(batch)  # training mode: z is sampled each time
    assert not torch.allclose(a["z"], b["z"])
    same = torch.allclose(a["align_logit"], b["align_logit"]) and torch.allclose(a["align_logit_neg"],
                                                                                b["align_logit_neg"])
    assert same == (alignment_input == "mean")


def test_a_resume_on_a_dataset_that_changed_since_is_refused(tmp_path):
    data = collect_small(tmp_path / "data", episodes=4, max_steps=20)
    train(_cfg(data, tmp_path / "run", epochs=1), progress=False)
    collect_small(data, episodes=5, max_steps=20)  # the same folder, one episode more
    with pytest.raises(ValueError, match=r"trained on other episodes than .*data holds \(episodes were added"):
        train(_cfg(data, tmp_path / "run", epochs=1), progress=False)


def test_ctrl_c_ends_training_with_how_to_resume_and_stops_a_sweep(data64, tmp_path):
    import signal

    out = tmp_path / "run"
    proc = subprocess.Popen([sys.executable, "-m", "mmrep.cli", "train", f"data={data64}", f"out={out}", "epochs=50",
                             "batch_size=16", "num_workers=0", "threads=1", "ckpt_every_steps=1", "progress=false"],
                            stderr=subprocess.PIPE, text=True,
                            # a shell's background jobs ignore SIGINT, and Python then installs no handler
                            preexec_fn=lambda: signal.signal(signal.SIGINT, signal.SIG_DFL))
    deadline = time.time() + 120
    while not (out / "last.pt").exists() and time.time() < deadline and proc.poll() is None:
        time.sleep(0.2)
    proc.send_signal(signal.SIGINT)  # what Ctrl-C sends
    _, err = proc.communicate(timeout=120)
    assert proc.returncode == 130, err[-2000:]
    assert f"interrupted; the same command resumes from {out / 'last.pt'}" in err and "Traceback" not in err

    from mmrep.config import run_hydra_app

    started = []

    def interrupted(cfg):  # a sweep whose first run is interrupted goes no further
        started.append(cfg.seed)
        raise SystemExit(130)

    assert run_hydra_app("train", ["-m", "seed=0,1,2", f"hydra.sweep.dir={tmp_path / 'sweep'}"], interrupted) == 130
    assert started == [0]
