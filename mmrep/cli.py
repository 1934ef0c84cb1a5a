"""The ``mmrep`` command: one subcommand per job (the table ``COMMANDS``). The Hydra apps (``collect``,
``train``, ``evaluate``, ``policy train``, ``policy eval``; configs in ``configs/``, every default in the
config dataclasses) take ``key=value`` overrides; the ``data`` tools import no torch.

    mmrep collect episodes=100 workers=2 out=data/sim env=fast
    mmrep train data=data/sim epochs=5 model=no_force out=runs/no_force
    mmrep evaluate "runs=[runs/a,robust:runs/b]" data=data/sim perturb=default out=outputs/eval
    mmrep policy train obs=state total_steps=300000 out=runs/policy_state
    mmrep data verify data/sim
    mmrep data export format=lerobot data=data/sim out=data/sim_lerobot     (also: format=robomimic)
    mmrep export-encoder runs/quality/encoder.pt --format onnx|safetensors [--out PATH]
    mmrep policy export policy=runs/policy out=runs/policy/policy.onnx
"""

from __future__ import annotations

import argparse
import json
import sys
from dataclasses import dataclass
from pathlib import Path

from mmrep.config import app_config, app_error, run_hydra_app

DOCS = "the documentation site: `make docs-serve` (http://127.0.0.1:8000), or docs/ in the repository"


@dataclass(frozen=True)
class Command:
    """One row of ``mmrep --help``: what the command does in a line, and for a Hydra app its main fields
    (shown with their defaults by ``mmrep <command> --help``), its config groups and an example."""

    summary: str
    app: str | None = None  # the Hydra app (configs/<app>.yaml); None: an argparse command
    fields: tuple[str, ...] = ()
    groups: tuple[str, ...] = ()
    examples: tuple[str, ...] = ()
    guide: str = ""


# The command table: a new command is one row here (and its handler below).
COMMANDS: dict[str, Command] = {
    "collect": Command(
        "collect a simulated dataset: scripted episodes into HDF5 shards, one worker per core", "collect",
        ("episodes", "workers", "out", "shapes", "policies", "seed", "backend", "compression", "valid_fraction"),
        ("env",), ("mmrep collect episodes=200 workers=2 out=data/sim",
                   "mmrep collect env=fast env.camera_fov=60 out=data/fast"), "guides/datasets.md"),
    "train": Command(
        "train a representation (the multimodal encoder and its self-supervised heads)", "train",
        ("data", "out", "epochs", "batch_size", "lr", "lr_schedule", "device", "threads", "seed"),
        ("model", "experiment", "augment"),
        ("mmrep train data=data/sim out=runs/full", "mmrep train data=data/sim model=no_force out=runs/no_force",
         "mmrep train -m 'model=glob(*)' data=data/sim out=runs/sweep"), "guides/representation.md"),
    "evaluate": Command(
        "evaluate trained representations under perturbations (occlusion, sensor faults)", "evaluate",
        ("runs", "data", "out", "perturbations", "levels", "episodes", "split", "reject", "threads"),
        ("perturb",), ('mmrep evaluate "runs=[runs/full]" data=data/sim perturb=quick out=outputs/eval',),
        "guides/robustness.md"),
    "policy train": Command(
        "train a policy (PPO, TRPO, SAC, recurrent PPO) on a frozen encoder, pixels or the state", "policy",
        ("out", "obs.encoder", "total_steps", "n_envs", "vec_env", "pin_workers", "seed", "eval_every_steps", "device",
         "threads"),
        ("algo", "obs", "paper"),
        ("mmrep policy train obs=latent_proprio obs.encoder=runs/full/encoder.pt algo=ppo out=runs/policy",
         "mmrep policy train +paper=fused_insertion seed=0 out=runs/paper/fused_insertion_s0"), "guides/policies.md"),
    "policy eval": Command(
        "evaluate a trained policy on held-out seeds under closed-loop faults", "policy_eval",
        ("policy", "out", "episodes", "settings", "shapes", "modes", "camera_memory", "reject_flagged", "fallback",
         "video"), (),
        ('mmrep policy eval policy=runs/policy episodes=100 "settings=[clean,occluder_after_contact,ft_dead]"',
         "mmrep policy eval policy=runs/fused fallback=runs/no_haptics \"settings=[clean,ft_dead]\""),
        "guides/policies.md"),
    "data verify": Command("check a dataset: schema, shapes, dtypes, NaN/inf, checksums",
                           examples=("mmrep data verify data/sim",), guide="guides/datasets.md"),
    "data info": Command("summarise a dataset: episodes, steps, size, shapes, contact and success",
                         examples=("mmrep data info data/sim --json",), guide="guides/datasets.md"),
    "data export": Command("write a dataset in another layout: the paper's reference files, LeRobot, robomimic",
                           examples=("mmrep data export --format reference data/sim data/sim_reference",
                                     "mmrep data export format=lerobot data=data/sim out=data/sim_lerobot",
                                     "mmrep data export format=robomimic data=data/sim out=data/sim_robomimic.hdf5"),
                           guide="formats.md"),
    "export-encoder": Command("write an encoder as safetensors + JSON or as an ONNX graph",
                              examples=("mmrep export-encoder runs/full/encoder.pt --format onnx",),
                              guide="formats.md"),
    "policy export": Command("write a trained policy as ONNX, its observation normaliser folded in",
                             examples=("mmrep policy export policy=runs/policy",), guide="formats.md"),
}


def _overview() -> str:
    """``mmrep --help``: every command in a line."""
    width = max(map(len, COMMANDS)) + 2
    rows = "\n".join(f"  {name:<{width}}{c.summary}" for name, c in COMMANDS.items())
    return (f"usage: mmrep <command> [key=value ...]\n\nmultimodal (vision, touch, proprioception) representations "
            f"for contact-rich manipulation\n\ncommands:\n{rows}\n\n`mmrep <command> --help` shows a command's "
            f"main fields, their defaults and an example.\nGuides, every option and the API: {DOCS}.")


def _field_value(cfg, key: str) -> str:
    from omegaconf import OmegaConf

    value = OmegaConf.select(cfg, key)
    if OmegaConf.is_config(value):
        value = OmegaConf.to_container(value)
    text = "null" if value is None else str(value).replace("True", "true").replace("False", "false")
    return text if len(text) <= 100 else text[:97] + "..."


def command_help(name: str) -> str:
    """``mmrep <command> --help``: the main fields with their defaults and meaning, the config groups and
    their options, examples, and where the rest is."""
    from mmrep.config import compose, group_options
    from mmrep.confighelp import field_comments

    c = COMMANDS[name]
    lines = [f"usage: mmrep {name} [key=value ...]", "", c.summary, ""]
    if c.app is not None:
        cfg = compose(c.app)
        schema = _schema(c.app)
        lines.append("main fields (key: default  meaning):")
        for key in c.fields:
            section, _, leaf = key.rpartition(".")
            cls = type(getattr(schema(), section)) if section else schema
            meaning = field_comments(cls).get(leaf, "").split(". ")[0]
            meaning = meaning if len(meaning) <= 90 else meaning[:87] + "..."
            lines.append(f"  {key}: {_field_value(cfg, key)}" + (f"  # {meaning}" if meaning else ""))
        if c.groups:
            # a group the app's defaults list does not name is added with a leading "+" (+paper=ROW)
            from omegaconf import OmegaConf

            from mmrep.config import config_dir

            named = {next(iter(d)) for d in OmegaConf.load(config_dir() / f"{c.app}.yaml").defaults
                     if OmegaConf.is_dict(d)}
            lines += ["", "config groups (group=option; +group=option where the command has no default for it):"]
            lines += [f"  {g if g in named else '+' + g}: {', '.join(group_options(g))}" for g in c.groups]
        lines += ["", "examples:", *(f"  {e}" for e in c.examples), "",
                  f"every field: `mmrep {name} --cfg job` (the composed config) or the configuration reference; "
                  "Hydra's own flags (-m, --cfg, --info, ...): `--hydra-help`."]
    else:
        lines += ["examples:", *(f"  {e}" for e in c.examples)]
    lines.append(f"guide: {c.guide} on {DOCS}.")
    return "\n".join(lines)


def _schema(app: str) -> type:
    from mmrep import config
    from sim.collect import CollectConfig

    return {"collect": CollectConfig, "train": config.TrainConfig, "evaluate": config.EvaluateConfig,
            "policy": config.PolicyConfig, "policy_eval": config.PolicyEvalConfig}[app]


_fail = app_error


def _collect_task(cfg) -> int:
    from sim.collect import CollectionInterrupted, collect
    from sim.dataset_format import format_info, info

    try:
        config = app_config(cfg)
        manifest = collect(config)
    except CollectionInterrupted as err:
        print(f"mmrep collect: {err}", file=sys.stderr)
        return 130
    except (ValueError, FileNotFoundError, RuntimeError, OSError) as err:
        return _fail("collect", err)
    print(format_info(info(config.out)))
    return 0 if manifest["complete"] else 1


def _train_app(cfg) -> int:
    from mmrep.train import run_train_app

    return run_train_app(cfg)


def _evaluate_task(cfg) -> int:
    from mmrep.evaluate import evaluate

    try:
        config = app_config(cfg)
        summary = evaluate(config)
    except KeyboardInterrupt:
        print("mmrep evaluate: interrupted; nothing was written (the results are written at the end)",
              file=sys.stderr)
        raise SystemExit(130) from None  # ends a sweep too (a return would go on to its next run)
    except (ValueError, FileNotFoundError, RuntimeError, OSError, KeyError) as err:
        return _fail("evaluate", err)
    out = Path(config.out)
    print(f"{len(summary['results'])} results in {summary['seconds'] / 60:.1f} min: {out / 'results.json'}, "
          f"{out / 'report.md'}")
    return 0


def _policy_task(cfg) -> int:
    from mmrep.policy import train_policy

    config = None
    try:
        config = app_config(cfg)
        final = train_policy(config)
    except KeyboardInterrupt:  # Ctrl-C: what was saved stays; say how to go on, not a traceback
        out = Path(str(config.out if config is not None else cfg.out))
        print(f"mmrep policy train: interrupted; the same command resumes from {out / 'checkpoint.pt'} (the last "
              "checkpoint) where one was written", file=sys.stderr)
        raise SystemExit(130) from None  # ends a sweep too (a return would go on to its next run)
    except (ValueError, FileNotFoundError, RuntimeError, OSError) as err:
        return _fail("policy train", err)
    print(json.dumps(final, indent=2))
    print(f"policy: {Path(config.out) / 'policy.pt'}  evaluations: {Path(config.out) / 'eval.jsonl'}")
    return 0


def _policy_eval_task(cfg) -> int:
    from mmrep.policy_eval import evaluate_policy_run

    try:
        config = app_config(cfg)
        summary = evaluate_policy_run(config)
    except KeyboardInterrupt:
        print("mmrep policy eval: interrupted; the same command goes on, keeping the rows already finished",
              file=sys.stderr)
        raise SystemExit(130) from None  # ends a sweep too (a return would go on to its next run)
    except (ValueError, FileNotFoundError, RuntimeError, OSError) as err:
        return _fail("policy eval", err)
    for r in summary["results"]:
        print(f"{r['setting']:24s} {r['shape']:10s} {r['mode']:13s} success {r['success_rate']:.2f} "
              f"(95% CI {r['success_ci95'][0]:.2f}-{r['success_ci95'][1]:.2f})")
    return 0


# What each Hydra app runs (not a ``sim.task``: those are what the robot must do).
_APP_RUNNERS = {"collect": _collect_task, "train": _train_app, "evaluate": _evaluate_task, "policy": _policy_task,
                "policy_eval": _policy_eval_task}


def run_app(app: str, args: list[str], command: str | None = None) -> int:
    """Run Hydra app ``app`` with command-line ``args`` (overrides, ``-m``, ``--cfg job``, ``--help``,
    ``--info`` ...), as ``mmrep <command> <args>`` (default ``app``); return the exit code."""
    return run_hydra_app(app, args, _APP_RUNNERS[app], command)


def _data(args: argparse.Namespace) -> int:
    from sim import dataset_format

    if args.action == "verify":
        problems = dataset_format.verify(args.path)
        for p in problems:
            print(p)
        print(f"{args.path}: {'OK' if not problems else f'{len(problems)} problem(s)'}")
        return 1 if problems else 0
    if args.action == "info":
        d = dataset_format.info(args.path)
        print(json.dumps(d, indent=2) if args.json else dataset_format.format_info(d))
        return 1 if d["warnings"] else 0  # a shard missing or damaged: not a sound dataset
    if args.action == "export":
        path, out = args.data or args.path, args.out or args.out_pos
        if not path or not out:
            raise ValueError("data export needs the dataset and the output: data=PATH out=PATH")
        if args.format == "lerobot":
            from mmrep.formats.lerobot import export_lerobot

            info = export_lerobot(path, out, flow=args.flow, episodes=args.episodes)
            print(f"wrote a LeRobot {info['codebase_version']} dataset to {out}: {info['total_episodes']} episodes, "
                  f"{info['total_frames']} frames, splits {info['splits']}")
            return 0
        if args.format == "robomimic":
            from mmrep.formats.robomimic import export_robomimic

            target = export_robomimic(path, out)
            print(f"wrote a robomimic view of {path} to {target} (links to the shards: keep them)")
            return 0
        from sim.reference_layout import export_reference

        files = export_reference(path, out)
        print(f"wrote {len(files)} reference-layout file(s) to {out}")
        return 0
    raise AssertionError(args.action)


_EXPORT_KEYS = ("format", "data", "out", "flow", "episodes")


def _key_values(argv: list[str]) -> list[str]:
    """``key=value`` words of ``mmrep data export`` as ``--key value`` (the Hydra apps' spelling)."""
    out = []
    for word in argv:
        key, sep, value = word.partition("=")
        out += [f"--{key}", value] if sep and key in _EXPORT_KEYS else [word]
    return out


def _wants_help(args: list[str]) -> bool:
    return any(a in ("-h", "--help") for a in args)


def main(argv: list[str] | None = None) -> int:
    argv = sys.argv[1:] if argv is None else argv
    if not argv or argv[0] in ("-h", "--help", "help"):
        print(_overview())
        return 0 if argv else 2
    if argv[:2] == ["policy", "export"]:  # argparse commands with a module of their own (mmrep.formats)
        from mmrep.formats.policy_onnx import main as policy_export

        return policy_export(argv[2:])
    if argv[:1] == ["export-encoder"]:
        from mmrep.formats.encoder_export import main as export_encoder_main

        return export_encoder_main(argv[1:])
    if argv[:2] == ["data", "export"]:
        argv = argv[:2] + _key_values(argv[2:])
    name = " ".join(argv[:2]) if " ".join(argv[:2]) in COMMANDS else argv[0]
    rest = argv[len(name.split()):]
    command = COMMANDS.get(name)
    if command is not None and command.app is not None:
        if _wants_help(rest):
            print(command_help(name))
            return 0
        return run_app(command.app, ["--help" if a == "--hydra-help" else a for a in rest], name)
    if name in ("policy", "data") and (not rest or _wants_help(rest)):
        print(_overview())
        return 0 if rest else 2
    parser = argparse.ArgumentParser(prog="mmrep", description=_overview().splitlines()[2])
    sub = parser.add_subparsers(dest="command", required=True)
    data = sub.add_parser("data", help="dataset tools")
    dsub = data.add_subparsers(dest="action", required=True)
    p = dsub.add_parser("verify", help=COMMANDS["data verify"].summary,
                       description=COMMANDS["data verify"].summary, epilog=COMMANDS["data verify"].examples[0])
    p.add_argument("path")
    p = dsub.add_parser("info", help=COMMANDS["data info"].summary,
                       description=COMMANDS["data info"].summary, epilog=COMMANDS["data info"].examples[0])
    p.add_argument("path")
    p.add_argument("--json", action="store_true")
    p = dsub.add_parser("export", help=COMMANDS["data export"].summary,
                       description=COMMANDS["data export"].summary, epilog=COMMANDS["data export"].examples[0])
    p.add_argument("--format", choices=["reference", "lerobot", "robomimic"], default="reference")
    p.add_argument("path", nargs="?")
    p.add_argument("out_pos", nargs="?", metavar="out")
    p.add_argument("--data", help="the dataset folder (or give it first)")
    p.add_argument("--out", help="where to write (or give it second)")

    def boolean(value: str) -> bool:  # flow=false / flow=true; a typo (flow=flase) is refused, not read as false
        word = value.strip().lower()
        if word not in ("1", "true", "yes", "0", "false", "no"):
            raise argparse.ArgumentTypeError(f"must be true or false, got {value!r}")
        return word in ("1", "true", "yes")

    def positive_int(value: str) -> int:
        try:
            number = int(value)
        except ValueError:
            number = 0
        if number < 1:
            raise argparse.ArgumentTypeError(f"must be a positive integer (leave it out for every episode), "
                                             f"got {value!r}")
        return number

    p.add_argument("--flow", type=boolean, default=True,
                   help="lerobot: include the exact optical flow: true or false (default true)")
    p.add_argument("--episodes", type=positive_int, default=None,
                   help="lerobot: only the first N (training first); default every episode")
    if argv[0] not in ("data",):
        print(f"mmrep: unknown command {argv[0]!r}\n\n{_overview()}", file=sys.stderr)
        return 2
    args = parser.parse_args(argv)
    try:
        return _data(args)
    except (ValueError, FileNotFoundError, FileExistsError, OSError, ImportError) as err:
        return _fail(f"data {args.action}", err)


if __name__ == "__main__":
    sys.exit(main())
