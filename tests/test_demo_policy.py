"""The demo's policy section: a briefly trained state policy, or a make-paper policy when present."""

import json

from mmrep.demo import demo_policy, policy_section


def test_demo_trains_a_state_policy_then_reuses_a_paper_run_when_present(tmp_path):
    trained = demo_policy(tmp_path / "policy", tmp_path / "no_paper_run", steps=64, episodes=2, seed=0)
    assert trained["kind"] == "state" and trained["steps"] == 64
    assert set(trained["results"]) == {"deterministic", "stochastic"}
    assert (tmp_path / "policy" / "policy.pt").exists()
    assert (tmp_path / trained["video"]).exists()
    text = policy_section({"policy": trained})
    assert "privileged state" in text and "![rollout](policy/eval/" in text
    assert policy_section({}) == ""

    reused = demo_policy(tmp_path / "again", tmp_path / "policy", steps=64, episodes=2, seed=0)
    assert reused["kind"] == "paper" and reused["run"] == str(tmp_path / "policy")
    assert not (tmp_path / "again" / "policy.pt").exists()  # evaluated, not retrained
    results = json.loads((tmp_path / "again" / "eval" / "results.json").read_text())
    assert results["seeds"] == trained["seeds"]
    assert "make paper" in policy_section({"policy": reused})
