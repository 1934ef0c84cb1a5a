"""Handing control to a policy without the failed sense (``mmrep policy eval fallback=...``): on a live
sensor the primary acts alone, bit for bit; on a dead one the fallback takes over at the step the
patience says, and with a patience of one the episodes are the fallback's own."""

import json

import pytest
import torch

from mmrep.encoder import Encoder, export_encoder
from mmrep.models import ModelConfig
from mmrep.reliability import Reliability

KEYS = ("rgb", "depth", "force", "proprio")
EVAL = ["episodes=2", "video=false", "progress=false", "modes=[deterministic,stochastic]"]


def train(tmp_path, name: str, encoder, *extra: str):
    from mmrep.config import app_config, compose
    from mmrep.policy import train_policy

    train_policy(app_config(compose("policy", [
        f"out={tmp_path / name}", "progress=false", "vec_env=dummy", "eval_episodes=0",
        "env.max_steps=8", "env.physics_hz=240.0", "env.image_size=64", "obs=latent_proprio",
        f"obs.encoder={encoder}", "total_steps=32", "algo=ppo", "algo.params.n_steps=16",
        "algo.params.batch_size=16", "algo.params.n_epochs=1", *extra])))
    return tmp_path / name


@pytest.fixture(scope="module")
def runs(tmp_path_factory):
    """A fused policy (its encoder reads F/T, thresholds that flag nothing) trained with the occluder in
    its episodes, a policy whose encoder does not read F/T, and one trained on a tighter hole."""
    tmp = tmp_path_factory.mktemp("handover")
    torch.manual_seed(0)
    fused = Encoder(ModelConfig(image_size=64, z_dim=16)).eval()
    vision = Encoder(ModelConfig(image_size=64, z_dim=16, force=False)).eval()
    export_encoder(fused, tmp / "fused.pt", Reliability({m: 1e9 for m in KEYS}, 0.99, 10))
    export_encoder(vision, tmp / "vision.pt")
    return {"fused": train(tmp, "fused", tmp / "fused.pt", "env.occluder.mode=after_contact",
                           "env.occluder.probability=0.5"), "vision": train(tmp, "vision", tmp / "vision.pt"),
            "tight": train(tmp, "tight", tmp / "vision.pt", "env.clearance=0.001"), "tmp": tmp}


def evaluate(out, *args: str) -> dict:
    from mmrep.cli import main

    assert main(["policy", "eval", *EVAL, *args, f"out={out}"]) == 0
    return {(r["setting"], r["mode"]): r for r in json.loads((out / "results.json").read_text())["results"]}


def episodes(row: dict) -> list[tuple]:
    return [(e["seed"], e["success"], e["steps"], e["return"], e["final_offset_mm"]) for e in row["episode_results"]]


def test_a_live_sensor_keeps_the_primary_and_a_dead_one_hands_over(runs):
    tmp, fused, vision = runs["tmp"], runs["fused"], runs["vision"]
    plain = evaluate(fused / "eval", f"policy={fused}", "settings=[clean,ft_dead]")
    alone = evaluate(tmp / "alone", f"policy={vision}", "settings=[ft_dead]")
    handed = evaluate(fused / "eval_handover", f"policy={fused}", f"fallback={vision}", "settings=[clean,ft_dead]")
    for mode in ("deterministic", "stochastic"):
        clean = handed[("clean", mode)]
        assert clean["handover_fraction"] == 0.0 and clean["fallback_on"] == ["force"]
        assert episodes(clean) == episodes(plain[("clean", mode)])  # the fallback never acted
        dead = handed[("ft_dead", mode)]
        assert dead["handover_fraction"] == 1.0
        assert [e["handover_step"] for e in dead["episode_results"]] == [3, 3]  # the default patience
    report = (fused / "eval_handover" / "report.md").read_text()
    assert "handed over to the fallback: clean deterministic 0.00" in report
    # handed over at the first step, the episodes are the fallback's own, sampled actions included
    first = evaluate(tmp / "first", f"policy={fused}", f"fallback={vision}", "fallback_patience=1",
                     "settings=[ft_dead]")
    for mode in ("deterministic", "stochastic"):
        assert [e["handover_step"] for e in first[("ft_dead", mode)]["episode_results"]] == [1, 1]
        assert episodes(first[("ft_dead", mode)]) == episodes(alone[("ft_dead", mode)])
    # the summary keeps the handover rows apart from the policy's own
    from conftest import load_benchmark

    cells = load_benchmark("paper_summary").row_summary([fused])["cells"]
    assert {c["setting"] for c in cells.values()} == {"clean", "ft_dead", "clean+handover", "ft_dead+handover"}
    assert cells["ft_dead+handover/square/deterministic"]["handover"] == 1.0  # the share of episodes handed over


def test_the_reliability_flags_can_trigger_the_handover(runs, tmp_path):
    from mmrep.encoder import load_encoder
    from mmrep.policy import load_policy
    from mmrep.policy_handover import HandoverPolicy

    fused, vision = runs["fused"], runs["vision"]
    primary = load_policy(fused / "policy.pt")
    fallback = load_policy(vision / "policy.pt")
    try:
        handover = HandoverPolicy((primary[0], primary[1], primary[3]), (fallback[0], fallback[1], fallback[3]),
                                  patience=2, trigger="flags")
        raw = primary[1].venv
        raw.seed(2_000_000)
        obs = raw.reset()
        handover.predict(obs, episode_start=[True])
        assert handover.handover_step is None  # thresholds of 1e9 flag nothing on a live sensor
        handover.reliability = Reliability({m: -1e9 for m in KEYS}, 0.99, 10)  # now every F/T reading is suspect
        handover.predict(raw.step(handover.predict(obs)[0])[0])
        assert handover.handover_step == 3  # two flagged steps in a row, counted from the second
        handover.predict(obs, episode_start=[True])
        assert handover.handover_step is None  # a new episode starts with the primary
        assert load_encoder(runs["tmp"] / "fused.pt").reliability.thresholds["force"] == 1e9  # the file is as it was
    finally:
        primary[1].close()
        fallback[1].close()


def test_a_fallback_that_reads_the_sense_or_learned_another_task_is_refused(runs):
    from mmrep.config import PolicyEvalConfig
    from mmrep.policy_eval import evaluate_policy_run

    tmp, fused = runs["tmp"], runs["fused"]
    base = dict(policy=str(fused), episodes=1, video=False, progress=False, modes=["deterministic"],
                settings=["ft_dead"])
    with pytest.raises(ValueError, match=r"fallback policy's encoder reads \['force'\]"):
        evaluate_policy_run(PolicyEvalConfig(**base, fallback=str(fused), out=str(tmp / "r1")))
    with pytest.raises(ValueError, match="another env .* clearance: 0.002 vs 0.001"):
        evaluate_policy_run(PolicyEvalConfig(**base, fallback=str(runs["tight"]), out=str(tmp / "r2")))
    with pytest.raises(ValueError, match="fallback_trigger must be one of"):
        evaluate_policy_run(PolicyEvalConfig(**base, fallback=str(runs["vision"]), fallback_trigger="smell",
                                             out=str(tmp / "r3")))
    with pytest.raises(ValueError, match=r"fallback_on \['smell'\]"):
        evaluate_policy_run(PolicyEvalConfig(**base, fallback=str(runs["vision"]), fallback_on=["smell"],
                                             out=str(tmp / "r4")))
    with pytest.raises(ValueError, match=r"flatline watches time series .* \['rgb'\] are not"):
        evaluate_policy_run(PolicyEvalConfig(**base, fallback=str(runs["vision"]), fallback_on=["rgb"],
                                             out=str(tmp / "r5")))
    with pytest.raises(ValueError, match="fallback_patience must be >= 1"):
        PolicyEvalConfig(**base, fallback=str(runs["vision"]), fallback_patience=0).validate()
    assert not (tmp / "r1" / "results.json").exists()


def test_the_tare_with_the_handover_takes_out_a_bias_and_still_hands_over_a_dead_sensor(runs):
    """ft_tare=true beside a fallback: a biased sensor's episodes are the clean ones (the tare took the
    offset out), a dead one still hands over, and the summary keeps the tared rows apart and scores them."""
    tmp, fused, vision = runs["tmp"], runs["fused"], runs["vision"]
    plain = evaluate(tmp / "plain_bias", f"policy={fused}", "settings=[clean,ft_bias]")
    tared = evaluate(fused / "eval_tare", f"policy={fused}", f"fallback={vision}", "ft_tare=true",
                     "settings=[clean,ft_bias,ft_dead]")
    for mode in ("deterministic", "stochastic"):
        as_trained = [e["return"] for e in plain[("ft_bias", mode)]["episode_results"]]
        assert as_trained != pytest.approx([e["return"] for e in plain[("clean", mode)]["episode_results"]])
        clean, bias = tared[("clean", mode)], tared[("ft_bias", mode)]
        assert clean["ft_tare"] is True and bias["handover_fraction"] == 0.0
        assert [e[:3] for e in episodes(bias)] == [e[:3] for e in episodes(clean)]
        assert [e[3] for e in episodes(bias)] == pytest.approx([e[3] for e in episodes(clean)], abs=1e-3)
        assert tared[("ft_dead", mode)]["handover_fraction"] == 1.0  # zeros stay zeros after the tare
    assert "the F/T sensor zeroed at each reset" in (fused / "eval_tare" / "report.md").read_text()
    from conftest import load_benchmark

    summary = load_benchmark("paper_summary")
    rows = {"fused_faults_memory_odometry_insertion_300k": summary.row_summary([fused])}
    cells = rows["fused_faults_memory_odometry_insertion_300k"]["cells"]
    assert {"clean+tare+handover", "ft_bias+tare+handover", "ft_dead+tare+handover"} <= {
        c["setting"] for c in cells.values()}
    assert summary.fault_remedies(rows, "fused_faults_memory_odometry_insertion_300k") == ["+handover",
                                                                                          "+tare+handover"]
    scored = {t["target"] for t in summary.remedy_targets(rows)}
    assert ("fused_faults_memory_odometry_insertion_300k under ft_bias within 10 points of clean (+tare+handover)"
            in scored)


def test_an_env_worker_tares_before_it_encodes(runs):
    """The worker path (obs.encode_in=workers): the tare sits inside the worker's env, so a biased
    sensor's z is the clean sensor's z."""
    import numpy as np

    from mmrep.rl.worker import make_latent_policy_env

    env = {"max_steps": 8, "physics_hz": 240.0, "image_size": 64}
    latents = {}
    for name, faults in (("clean", ()), ("bias", ("force/bias:1",))):
        for tare in (False, True):
            e = make_latent_policy_env(env, faults, 0, None, str(runs["tmp"] / "fused.pt"), ft_tare=tare)
            latents[name, tare] = e.reset(seed=5)[0]
            e.close()
    untared = np.abs(latents["bias", False] - latents["clean", False]).max()
    tared = np.abs(latents["bias", True] - latents["clean", True]).max()
    assert untared > 1e-4 and tared < untared / 100  # the bias moved z; after the tare it hardly does
