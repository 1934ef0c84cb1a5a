"""Same seeds, same observations: env rollouts hashed in this tree and in an older one, compared.

Each setting runs ``--episodes`` episodes on fixed seeds with seeded random actions that lean
downwards (so the peg reaches the block, makes contact and, where the setting has one, brings the
occluder in), and hashes (sha256) every observation entry's bytes, every reward and every
termination / truncation flag. The rollouts run in a fresh process per tree (``PYTHONPATH``), through
``gymnasium.make("mmrep/PegInsertion-v0", ...)``, which both trees register, so a speed change of the
env (culling, the floor drawn once per view) can be checked for bit-identical output against the
tree before it.

    python benchmarks/observation_digest.py --base a0db715 --episodes 4 \
        --out benchmarks/results/speed/observation_digest.json
"""

from __future__ import annotations

import argparse
import hashlib
import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent

# env keyword arguments per setting, all present in the tree before the speed work (a0db715)
SETTINGS: dict[str, dict] = {
    "default_1khz": {"physics_hz": 1000.0},
    "occluder_after_contact": {"physics_hz": 1000.0, "occluder": {"mode": "after_contact"}},
    "occluder_static": {"physics_hz": 1000.0, "occluder": {"mode": "static"}},
    "round_peg_64px": {"peg_shape": "round", "image_size": 64},
}


def digest(env_kwargs: dict, episodes: int, max_steps: int, seed: int) -> dict:
    """sha256 of ``episodes`` seeded episodes of at most ``max_steps`` steps, and how many steps ran."""
    import gymnasium as gym
    import numpy as np

    import sim  # noqa: F401  (registers the env ids)

    env = gym.make("mmrep/PegInsertion-v0", max_steps=max_steps, **env_kwargs)
    h = hashlib.sha256()
    steps = 0
    for ep in range(episodes):
        rng = np.random.default_rng(seed + ep)
        obs, _ = env.reset(seed=seed + ep)
        done = False
        while not done:
            for k in sorted(obs):
                h.update(k.encode())
                h.update(np.ascontiguousarray(obs[k]).tobytes())
            action = rng.uniform(-1, 1, env.action_space.shape).astype(np.float32)
            action[2] = -0.6 + 0.4 * action[2]  # mostly down: reach the block, touch it
            obs, r, term, trunc, _ = env.step(action)
            h.update(np.float64(r).tobytes())
            h.update(bytes([bool(term), bool(trunc)]))
            done, steps = term or trunc, steps + 1
    env.close()
    return {"sha256": h.hexdigest(), "steps": steps}


def run_tree(tree: Path, args: argparse.Namespace) -> dict:
    cmd = [sys.executable, str(Path(__file__).resolve()), "--child", "--episodes", str(args.episodes),
           "--max-steps", str(args.max_steps), "--seed", str(args.seed)]
    out = subprocess.run(cmd, cwd=tree, env={**os.environ, "PYTHONPATH": str(tree)}, capture_output=True,
                         text=True, check=False)
    if out.returncode != 0:
        raise RuntimeError(f"{tree}: {' '.join(cmd)} failed:\n{out.stderr[-3000:]}")
    row = json.loads(out.stdout.strip().splitlines()[-1])
    if Path(row["sim"]).resolve() != tree.resolve():
        raise RuntimeError(f"the child imported sim from {row['sim']}, not {tree}")
    return row["rows"]


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--base", default="a0db715", help="git commit of the older tree (archived to a temp dir)")
    ap.add_argument("--episodes", type=int, default=4, help="episodes per setting")
    ap.add_argument("--max-steps", type=int, default=60, help="env steps per episode at most")
    ap.add_argument("--seed", type=int, default=0, help="first episode's seed (then seed + 1, ...)")
    ap.add_argument("--out", default=None)
    ap.add_argument("--child", action="store_true", help=argparse.SUPPRESS)
    args = ap.parse_args()
    if args.child:
        import sim

        rows = {name: digest(kw, args.episodes, args.max_steps, args.seed) for name, kw in SETTINGS.items()}
        print(json.dumps({"sim": str(Path(sim.__file__).parent.parent), "rows": rows}))
        return
    from policy_speedup import tree_commit  # the sibling script (benchmarks/ is on sys.path when run)

    with tempfile.TemporaryDirectory(prefix="mmrep_base_") as tmp:
        archive = subprocess.run(["git", "archive", args.base], cwd=ROOT, capture_output=True, check=True).stdout
        subprocess.run(["tar", "-x", "-C", tmp], input=archive, check=True)
        base = run_tree(Path(tmp), args)
    new = run_tree(ROOT, args)
    rows = {name: {"base": base[name], "new": new[name], "identical": base[name] == new[name]} for name in SETTINGS}
    result = {"benchmark": "observation_digest", "date": time.strftime("%Y-%m-%d"), "base": args.base,
              "new": tree_commit(), "episodes": args.episodes, "max_steps": args.max_steps,
              "seed": args.seed, "settings": SETTINGS, "rows": rows,
              "all_identical": all(r["identical"] for r in rows.values())}
    for name, r in rows.items():
        print(f"{name}: {r['new']['steps']} steps, {'identical' if r['identical'] else 'DIFFERENT'}")
    print("all identical" if result["all_identical"] else "NOT identical")
    if args.out:
        Path(args.out).parent.mkdir(parents=True, exist_ok=True)
        Path(args.out).write_text(json.dumps(result, indent=2) + "\n")
        print(f"wrote {args.out}")
    if not result["all_identical"]:
        sys.exit(1)


if __name__ == "__main__":
    main()
