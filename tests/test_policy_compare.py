"""`python -m mmrep.policy_compare`: several policies on the same held-out seeds, side by side."""

import json

import imageio.v3 as iio
import pytest
from test_policy import TINY_PPO, policy_cfg  # not tests.test_policy: draccus installs a top-level "tests"

from mmrep.cli import main
from mmrep.policy import train_policy
from mmrep.policy_compare import differing_seeds, evaluated_outcomes
from mmrep.policy_compare import main as compare_main


def test_differing_seeds_are_the_shared_seeds_where_outcomes_part():
    a = {1: True, 2: True, 3: False, 4: True, 5: False}
    b = {1: True, 2: False, 3: True, 4: True}  # seed 5 not evaluated
    assert differing_seeds([a, b], 5) == [2, 3]
    assert differing_seeds([a, b], 1) == [2]
    assert differing_seeds([a, a], 5) == []


def test_compare_replays_each_policys_evaluation_episode_side_by_side(tmp_path):
    runs = []
    for seed in (0, 1):
        run = tmp_path / f"state_s{seed}"
        train_policy(policy_cfg(run, "obs=state", "total_steps=32", f"seed={seed}", *TINY_PPO))
        assert main(["policy", "eval", f"policy={run}", "episodes=3", "video=false", "progress=false",
                     "modes=[deterministic]"]) == 0
        runs.append(run)
    outcomes = [evaluated_outcomes(r, "clean", "deterministic") for r in runs]
    assert all(sorted(o) == [2_000_000, 2_000_001, 2_000_002] for o in outcomes)
    assert evaluated_outcomes(runs[0], "pushes", "deterministic") == {}  # not evaluated

    out = tmp_path / "compare"
    compare_main([str(r) for r in runs] + ["--names", "A", "B", "--seeds", "2000001", "--out", str(out)])
    report = json.loads((out / "compare.json").read_text())
    assert report["seeds_chosen_by"] == "given" and [e["seed"] for e in report["episodes"]] == [2_000_001]
    for run, name in zip(runs, ["A", "B"]):
        evaluated = json.loads((run / "eval" / "results.json").read_text())["results"][0]["episode_results"][1]
        assert report["episodes"][0]["results"][name] == evaluated  # the evaluation's episode, replayed
    frames = iio.imread(out / report["episodes"][0]["gif"])
    longest = max(r["steps"] for r in report["episodes"][0]["results"].values())
    # one frame per control step of the longer episode (its last step resets the env, so not drawn)
    assert frames.shape[0] == longest - 1 and frames.shape[2] > frames.shape[1]  # two panels, wide

    compare_main([str(r) for r in runs] + ["--out", str(out)])  # seeds chosen from the evaluations
    chosen = json.loads((out / "compare.json").read_text())
    differ = differing_seeds(outcomes, 2)
    assert [e["seed"] for e in chosen["episodes"]] == (differ or [2_000_000])
    assert chosen["names"] == ["state_s0", "state_s1"]

    with pytest.raises(SystemExit, match="setting"):
        compare_main([str(runs[0]), "--setting", "fog", "--out", str(out)])
