"""Every code block of the README and of the documentation's guides runs.

The named policy examples of the policies guide run as written on tiny budgets (only the budget
constants change). Every other ``python`` and ``bash`` block of README.md, docs/index.md,
docs/getting-started.md and docs/guides/*.md runs too: the python blocks of a page in order, in one
process; the bash blocks with each ``mmrep`` command scaled down (fewer episodes, steps and batches:
``tiny``) in a workspace where the README's own commands made a dataset, a representation and a policy.
A block that cannot run here (a cluster, a citation) says why in a ``<!-- not run: reason -->`` comment
on the line before it, and a test checks that every other block is run."""

import os
import re
import shlex
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]


EXAMPLES = ROOT / "docs" / "guides" / "policies.md"


def readme_example(name: str) -> str:
    """The policies guide's python block that starts with ``# example: <name>``."""
    blocks = re.findall(r"```python\n(.*?)```", EXAMPLES.read_text(), flags=re.S)
    found = [b for b in blocks if b.startswith(f"# example: {name}\n")]
    assert len(found) == 1, f"{EXAMPLES} has {len(found)} examples named {name!r}"
    return found[0]


def shrink(code: str, **constants: int) -> str:
    """The example with its budget constants (``STEPS = 20_000``) set to small values."""
    for name, value in constants.items():
        code, n = re.subn(rf"^{name} = [\d_]+$", f"{name} = {value}", code, flags=re.M)
        assert n == 1, f"the example has no line `{name} = <number>`"
    return code


def run_example(code: str, tmp_path: Path, env_kwargs: str) -> str:
    # A fast env (fewer steps and substeps) through the one factory the examples call.
    code = code.replace("make_rl_env()", f"make_rl_env({env_kwargs})")
    code = code.replace("[make_rl_env] * 2", f"[lambda: make_rl_env({env_kwargs})] * 2")
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


# ------------------------------------------------------------------ every block of the README and the guides
PAGES = [ROOT / "README.md", ROOT / "docs" / "index.md", ROOT / "docs" / "getting-started.md",
         *sorted((ROOT / "docs" / "guides").glob("*.md"))]
NOT_RUN = re.compile(r"<!-- not run: (.*?) -->\s*$")


def code_blocks(page: Path) -> list[tuple[str, str, str | None]]:
    """``(language, code, why not run or None)`` of every fenced block of ``page``."""
    out = []
    lines = page.read_text().splitlines()
    i = 0
    while i < len(lines):
        m = re.match(r"^```(\w*)\s*$", lines[i])
        if not m:
            i += 1
            continue
        end = next(j for j in range(i + 1, len(lines)) if lines[j].startswith("```"))
        marker = NOT_RUN.match(lines[i - 1].strip()) if i else None
        out.append((m.group(1), "\n".join(lines[i + 1:end]) + "\n", marker.group(1).strip() if marker else None))
        i = end + 1
    return out


def runnable(page: Path, lang: str) -> list[str]:
    return [code for kind, code, why in code_blocks(page)
            if kind == lang and why is None and not code.startswith("# example: ")]


# Scaled-down values for each command (set or replaced): seconds, not minutes, on 2 cores.
TINY = {
    "collect": ["episodes=4", "workers=1", "env.max_steps=12", "valid_fraction=0.5", "progress=false"],
    "train": ["epochs=1", "batch_size=8", "max_batches_per_epoch=2", "max_val_batches=1", "threads=1",
              "progress=false"],
    "evaluate": ["episodes=1", "calibration_episodes=1", "batch_size=16", "levels=[0.0,0.5]", "threads=1",
                 "progress=false"],
    "policy train": ["total_steps=32", "n_envs=1", "vec_env=dummy", "env.max_steps=8", "env.physics_hz=240.0",
                     "eval_episodes=1", "eval_every_steps=32", "ckpt_every_steps=32", "progress=false",
                     "algo.params.n_steps=16", "algo.params.batch_size=16"],
    "policy eval": ["episodes=1", "video=false", "progress=false", "modes=[deterministic]"],
}


def tiny(line: str) -> str:
    """An ``mmrep`` command line at tiny scale; other lines as they are."""
    words = shlex.split(line, comments=True)
    if not words or words[0] != "mmrep" or any(w.startswith("-") for w in words):
        return line
    name = " ".join(words[1:3]) if " ".join(words[1:3]) in TINY else words[1]
    overrides = list(TINY.get(name, []))
    if name == "policy train" and any(w in ("algo=ppo",) for w in words):
        overrides.append("algo.params.n_epochs=1")
    keys = {o.split("=", 1)[0] for o in overrides}
    kept = [w for w in words if w.split("=", 1)[0] not in keys]
    return shlex.join(kept + overrides)


def bash_script(code: str) -> str:
    joined = code.replace("\\\n", " ")
    return "\n".join(tiny(line) for line in joined.splitlines())


def run_in(workspace: Path, argv: list[str], what: str) -> str:
    env = {**os.environ, "PATH": f"{Path(sys.executable).parent}:{os.environ.get('PATH', '')}",
           "PYTHONPATH": str(ROOT)}
    done = subprocess.run(argv, cwd=workspace, env=env, capture_output=True, text=True, timeout=900)
    assert done.returncode == 0, f"{what}:\n{done.stdout[-2000:]}\n{done.stderr[-4000:]}"
    return done.stdout


@pytest.fixture(scope="module")
def workspace(tmp_path_factory) -> Path:
    """A folder where the README's command blocks ran at tiny scale (data/sim, runs/full, runs/policy)."""
    ws = tmp_path_factory.mktemp("readme")
    (ws / "benchmarks").symlink_to(ROOT / "benchmarks")  # the committed encoders the examples load
    for code in runnable(ROOT / "README.md", "bash"):
        run_in(ws, ["bash", "-euo", "pipefail", "-c", bash_script(code)], "README bash block")
    return ws


def test_every_block_runs_or_says_why():
    for page in PAGES:
        for lang, _code, why in code_blocks(page):
            assert why != "", f"{page.name}: a 'not run' marker without a reason"
            if why is None:
                assert lang in ("python", "bash", "text", ""), \
                    f"{page.name}: a {lang} block that no test runs needs a '<!-- not run: reason -->' line"


def test_tiny_scales_mmrep_commands_and_leaves_others():
    assert tiny("mmrep collect episodes=200 workers=2 out=data/x") == \
        "mmrep collect out=data/x " + " ".join(TINY["collect"])
    assert "total_steps=32" in tiny("mmrep policy train obs=state total_steps=300000 out=runs/p")
    assert tiny("mmrep collect --cfg job env=small") == "mmrep collect --cfg job env=small"
    assert tiny("ls data") == "ls data"


def test_readme_commands_made_the_pipeline(workspace):
    assert (workspace / "data" / "sim" / "manifest.json").exists()
    assert (workspace / "runs" / "full" / "encoder.pt").exists()
    assert (workspace / "outputs" / "eval" / "report.md").exists()
    assert (workspace / "runs" / "policy" / "eval" / "results.json").exists()


FIRST_STEPS = ("README.md", "getting-started.md")  # a new user's path: in the default run; the guides: slow


@pytest.mark.parametrize("page", [p if p.name in FIRST_STEPS else pytest.param(p, marks=pytest.mark.slow)
                                  for p in PAGES], ids=lambda p: p.name)
def test_python_blocks_of_the_page_run(page, workspace, tmp_path):
    code = "\n".join(runnable(page, "python"))
    if not code:
        pytest.skip(f"{page.name} has no python block")
    ws = tmp_path / "ws"
    shutil.copytree(workspace, ws, symlinks=True)
    # Policy envs with short episodes at 240 Hz, through the one factory the blocks call (as run_example).
    code = code.replace("make_rl_env()", f"make_rl_env({FAST})")
    code = code.replace("[make_rl_env]", f"[lambda: make_rl_env({FAST})]")
    (ws / "page.py").write_text(code)
    run_in(ws, [sys.executable, "page.py"], f"the python blocks of {page.name}")


@pytest.mark.slow  # about 4 minutes for all the guides on 2 cores (the README's own blocks run by default)
@pytest.mark.parametrize("page", [p for p in PAGES if p.name != "README.md"], ids=lambda p: p.name)
def test_bash_blocks_of_the_page_run(page, workspace, tmp_path):
    blocks = runnable(page, "bash")
    if not blocks:
        pytest.skip(f"{page.name} has no bash block")
    ws = tmp_path / "ws"
    shutil.copytree(workspace, ws, symlinks=True)
    for code in blocks:
        run_in(ws, ["bash", "-euo", "pipefail", "-c", bash_script(code)], f"a bash block of {page.name}")


if __name__ == "__main__":
    sys.exit(pytest.main([__file__]))
