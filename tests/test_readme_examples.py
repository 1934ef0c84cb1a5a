"""The README's policy examples run as written (on tiny budgets: only the budget constants change)."""

import re
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]


def readme_example(name: str) -> str:
    """The README's python block that starts with ``# README example: <name>``."""
    blocks = re.findall(r"```python\n(.*?)```", (ROOT / "README.md").read_text(), flags=re.S)
    found = [b for b in blocks if b.startswith(f"# README example: {name}\n")]
    assert len(found) == 1, f"README.md has {len(found)} examples named {name!r}"
    return found[0]


def shrink(code: str, **constants: int) -> str:
    """The example with its budget constants (``STEPS = 20_000``) set to small values."""
    for name, value in constants.items():
        code, n = re.subn(rf"^{name} = [\d_]+$", f"{name} = {value}", code, flags=re.M)
        assert n == 1, f"the example has no line `{name} = <number>`"
    return code


def run_example(code: str, tmp_path: Path, env_kwargs: str) -> str:
    # A fast env (fewer steps and substeps) through the one factory the examples call.
    code = code.replace("make_policy_env()", f"make_policy_env({env_kwargs})")
    code = code.replace("[make_policy_env] * 2", f"[lambda: make_policy_env({env_kwargs})] * 2")
    script = tmp_path / "example.py"
    script.write_text(code)
    done = subprocess.run([sys.executable, str(script)], cwd=ROOT, capture_output=True, text=True, timeout=600)
    assert done.returncode == 0, done.stderr[-3000:]
    return done.stdout


FAST = "{'max_steps': 6, 'physics_hz': 240.0}"


def test_readme_sb3_example_runs(tmp_path):
    code = shrink(readme_example("sb3"), STEPS=64).replace("n_steps=512", "n_steps=32")
    run_example(code, tmp_path, FAST)


def test_readme_torch_loop_runs(tmp_path):
    out = run_example(shrink(readme_example("torch"), EPISODES=2), tmp_path, FAST)
    assert re.findall(r"episode \d: return [\d.]+, success (True|False)", out) and "episode 1" in out


def test_readme_examples_use_a_committed_encoder():
    for name in ("sb3", "torch"):
        path = re.search(r'ENCODER = "([^"]+)"', readme_example(name)).group(1)
        assert (ROOT / path).exists(), path


if __name__ == "__main__":
    sys.exit(pytest.main([__file__]))
