"""The CLI's help and the generated reference pages say what the code does."""

import dataclasses
import importlib.util
import os
import re
import subprocess
import sys
from pathlib import Path

import pytest

from mmrep.cli import COMMANDS, main
from mmrep.config import EvaluateConfig, PolicyConfig, PolicyEvalConfig, TrainConfig
from sim.collect import CollectConfig
from sim.config import EnvConfig

ROOT = Path(__file__).resolve().parents[1]


def _reference():
    spec = importlib.util.spec_from_file_location("config_reference", ROOT / "docs/hooks/config_reference.py")
    module = importlib.util.module_from_spec(spec)
    sys.modules["config_reference"] = module
    spec.loader.exec_module(module)
    return module


def test_mmrep_help_lists_every_command_in_a_line_and_points_to_the_docs(capsys):
    assert main(["--help"]) == 0
    out = capsys.readouterr().out
    for name, command in COMMANDS.items():
        assert f"  {name}" in out and command.summary in out
    assert "documentation site" in out and "make docs-serve" in out
    assert main([]) == 2  # no command: the same overview, as a usage error
    assert main(["frobnicate"]) == 2
    assert "unknown command 'frobnicate'" in capsys.readouterr().err


@pytest.mark.parametrize("name", [n for n, c in COMMANDS.items() if c.app])
def test_command_help_shows_main_fields_with_defaults_and_an_example(name, capsys):
    assert main([*name.split(), "--help"]) == 0
    out = capsys.readouterr().out
    assert out.startswith(f"usage: mmrep {name}")
    assert "Powered by Hydra" not in out and "== Config ==" not in out
    for key in COMMANDS[name].fields:
        assert f"  {key}: " in out
    assert "examples:" in out and COMMANDS[name].examples[0] in out


def test_help_defaults_are_the_composed_configs(capsys):
    main(["train", "--help"])
    out = capsys.readouterr().out
    assert f"  epochs: {TrainConfig().epochs}" in out and "  lr: 0.0001" in out
    main(["policy", "eval", "--help"])
    assert f"  episodes: {PolicyEvalConfig().episodes}" in capsys.readouterr().out


def test_hydra_help_is_still_there(capsys):
    assert main(["collect", "--hydra-help"]) == 0
    assert "== Config ==" in capsys.readouterr().out


def test_config_reference_names_every_field_with_its_default_and_rules():
    page = _reference().render()
    sections = [
        (CollectConfig, ""),
        (EnvConfig, "env."),
        (TrainConfig, ""),
        (EvaluateConfig, ""),
        (PolicyConfig, ""),
        (PolicyEvalConfig, ""),
    ]
    for cls, prefix in sections:
        for f in dataclasses.fields(cls):
            default = f.default if f.default is not dataclasses.MISSING else f.default_factory()
            if dataclasses.is_dataclass(default):
                if type(default) is EnvConfig and cls is not EnvConfig:
                    continue  # documented once, in its own section
                for sub in dataclasses.fields(default):
                    assert f"`{prefix}{f.name}.{sub.name}`" in page, f"{prefix}{f.name}.{sub.name}"
            else:
                assert f"`{prefix}{f.name}` |" in page, f"{prefix}{f.name}"
    # units from the code's comments, rules from validate
    clearance = (
        "| `env.clearance` | `float` | `0.002` | m, hole width minus peg width | clearance must be in [0, 0.02] m |"
    )
    assert clearance in page
    assert "controller.kp_pos must be a positive finite number" in page
    assert "model.fusion must be 'poe' or 'concat'" in page


def test_config_groups_table_lists_every_option_with_its_comment():
    table = _reference().render_groups()
    for path in sorted((ROOT / "configs").glob("*/*.yaml")):
        key = "+paper" if path.parent.name == "paper" else path.parent.name  # no command has a default paper row
        assert f"| `{key}={path.stem}` |" in table, path
    assert "### `+paper=`" in table and "### `algo=`" in table
    assert "| `algo=trpo` | TRPO (sb3-contrib), the paper's algorithm" in table


def test_cli_reference_is_what_the_commands_print(capsys):
    page = _reference().render_cli()
    for name in (n for n, c in COMMANDS.items() if c.app):  # the Hydra apps; data tools print argparse's help
        main([*name.split(), "--help"])
        assert capsys.readouterr().out.strip() in page, name


_LINK = re.compile(r"\]\(([^)\s#]+)(?:#[^)]*)?\)")


def test_every_local_link_in_readme_and_docs_is_a_file_git_tracks():
    """A link to an ignored file (a rollout GIF left untracked) works here but breaks a clean clone's docs build."""
    tracked = subprocess.run(["git", "ls-files", "-z"], cwd=ROOT, capture_output=True, text=True, check=False)
    if tracked.returncode != 0:
        pytest.skip("not a git checkout")
    files = set(tracked.stdout.split("\0"))
    missing = []
    for page in [ROOT / "README.md", *sorted((ROOT / "docs").rglob("*.md"))]:
        for target in _LINK.findall(page.read_text()):
            if "://" in target or target.startswith("mailto:"):
                continue
            path = Path(os.path.normpath(page.parent / target))
            if not path.is_relative_to(ROOT):
                continue
            rel = path.relative_to(ROOT).as_posix()
            # The docs hook serves benchmarks/results/ from the site root, so a page's ../benchmarks/... is there.
            rel = rel.removeprefix("docs/") if rel.startswith("docs/benchmarks/") else rel
            path = ROOT / rel
            if path.is_dir() or rel.startswith("docs/api") or rel.startswith("docs/reference"):
                continue
            if rel not in files:
                missing.append(f"{page.relative_to(ROOT)} -> {target}")
    assert not missing, "links to files git does not track:\n" + "\n".join(missing)
