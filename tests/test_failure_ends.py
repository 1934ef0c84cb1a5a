"""benchmarks/failure_ends.py: failed episodes sorted by where they ended, from an evaluation's results.json."""

import json
from pathlib import Path

import pytest
from conftest import load_benchmark


def _episode(success: bool, steps: int, depth: float, offset: float, force: float = 30.0) -> dict:
    return {"seed": 0, "success": success, "steps": steps, "final_depth_mm": depth, "final_offset_mm": offset,
            "peak_force_step_mean_n": force}


def _write(run: Path, folder: str, setting: str, mode: str, episodes: list[dict], shape: str = "square") -> None:
    (run / folder).mkdir(parents=True, exist_ok=True)
    res = {"results": [{"setting": setting, "shape": shape, "mode": mode, "episode_results": episodes}]}
    (run / folder / "results.json").write_text(json.dumps(res))


def test_failures_are_sorted_by_where_they_ended_and_pooled_over_runs(tmp_path):
    fe = load_benchmark("failure_ends")
    a, b = tmp_path / "s0", tmp_path / "s1"
    _write(a, "eval", "clean", "deterministic", [
        _episode(True, 40, 30.0, 0.5),
        _episode(False, 200, 0.1, 2.0, force=20.0),   # pressed on the top near the hole
        _episode(False, 200, 12.0, 1.4),              # in the hole, short of the depth
        _episode(False, 200, 40.0, 160.0),            # down beside the block
        _episode(False, 200, -20.0, 30.0),            # hovering above the block
        _episode(False, 200, float("nan"), float("nan")),  # cut for a NaN
    ])
    _write(b, "eval", "clean", "deterministic", [_episode(False, 200, 0.2, 8.0, force=40.0)])
    _write(b, "eval_sampled", "clean", "stochastic", [_episode(False, 150, 0.0, 3.0)])  # stopped early on top
    _write(b, "eval_transfer", "clean", "deterministic", [_episode(False, 200, 0.1, 1.0)], shape="round")
    res = fe.summarise([a, b], ["clean"], surface_mm=1.0, max_steps=200, hole_mm=5.0)
    det = res["clean/square/deterministic"]
    assert (det["episodes"], det["failures"]) == (7, 6)
    kinds = ("on_surface_to_limit", "in_hole_short", "off_the_block", "above_the_block", "other")
    assert tuple(det[k] for k in kinds) == (2, 1, 1, 1, 1)
    assert det["on_surface_offset_mm_median"] == pytest.approx(5.0)
    assert det["on_surface_within_3mm"] == 1
    assert det["on_surface_peak_force_n_median"] == pytest.approx(30.0)
    assert res["clean/square/stochastic"]["other"] == 1
    assert "clean/round/deterministic" not in res  # eval_transfer is not read unless named
    res = fe.summarise([b], None, 1.0, 200, 5.0, evals=("eval_transfer",))
    assert list(res) == ["clean/round/deterministic"]


def test_a_run_without_evaluations_names_it(tmp_path):
    fe = load_benchmark("failure_ends")
    with pytest.raises(SystemExit, match="s9.*eval/results.json"):
        fe.summarise([tmp_path / "s9"], None, 1.0, 200, 5.0)
    (tmp_path / "s8" / "eval").mkdir(parents=True)
    (tmp_path / "s8" / "eval" / "results.json").write_text("{truncated")
    with pytest.raises(SystemExit, match="s8/eval/results.json: not an `mmrep policy eval` results file"):
        fe.summarise([tmp_path / "s8"], None, 1.0, 200, 5.0)
