"""Layering: ``sim`` never imports torch or mmrep (DESIGN.md, "Layers")."""

import subprocess
import sys


def test_sim_does_not_import_torch_or_mmrep():
    code = ("import sys, sim, sim.experts, sim.peg_hole_experts, sim.rl_env, sim.flow, sim.camera, sim.perturb, "
            "sim.wrappers, sim.disturbances; "
            "print(any(m == 'torch' or m.startswith('torch.') or m == 'mmrep' for m in sys.modules))")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "False"


def test_data_tools_and_collect_do_not_import_torch(tmp_path):
    code = ("import sys; from mmrep.cli import main; "
            f"assert main(['collect', 'episodes=1', 'workers=1', 'env=small', 'env.max_steps=3', 'out={tmp_path}', "
            "'progress=false']) == 0; "
            f"assert main(['data', 'verify', '{tmp_path}']) == 0; assert main(['data', 'info', '{tmp_path}']) == 0; "
            "print('TORCH', any(m == 'torch' or m.startswith('torch.') for m in sys.modules))")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert "TORCH False" in out.stdout


def test_training_imports_where_pybullet_is_absent(tmp_path):
    """A GPU node fed collected data has no simulator: training must not import PyBullet, and the env,
    asked for there, fails with PyBullet's ImportError rather than at ``import sim``."""
    block = tmp_path / "block"
    block.mkdir()
    for name in ("pybullet", "pybullet_data"):
        (block / f"{name}.py").write_text("raise ImportError('PyBullet is not installed here')\n")
    code = ("import sys, sim, mmrep.train, mmrep.data, mmrep.cli; "
            "print('PYBULLET', 'pybullet' in sys.modules and sys.modules['pybullet'] is not None); "
            "print('IDS', len(sim.ENV_IDS)); "
            "exec('try:\\n    sim.PegInsertionEnv\\nexcept ImportError as e:\\n    print(\"ENV\", e)')")
    env = {"PYTHONPATH": str(block), "PATH": "/usr/bin:/bin"}
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, env=env, check=True)
    assert "PYBULLET False" in out.stdout
    assert "IDS 6" in out.stdout
    assert "ENV PyBullet is not installed here" in out.stdout
