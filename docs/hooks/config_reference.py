"""The configuration reference, generated from the config dataclasses at every docs build.

Every option of every command lives once, in a dataclass (``sim.config``, ``sim.collect``,
``mmrep.config``). This module reads those classes (field names, types and defaults from the classes
themselves; units and meaning from the comment on each field's line; validation rules from the
``raise ValueError`` messages and ``_positive`` checks of their ``validate`` methods) and renders one
Markdown table per section. ``mkdocs build`` calls it through the hook below, so the page cannot drift
from the code; ``python docs/hooks/config_reference.py`` prints the page.
"""

from __future__ import annotations

import ast
import dataclasses
import importlib
import inspect
import re
import sys
import textwrap
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[2]
PLACEHOLDER = "<!-- config-reference -->"

# (heading, Hydra key prefix, "module:Class", how to set it). Nested dataclasses are expanded in place.
SECTIONS: list[tuple[str, str, str, str]] = [
    ("mmrep collect", "", "sim.collect:CollectConfig", "`mmrep collect key=value`; `configs/collect.yaml`"),
    ("The environment", "env.", "sim.config:EnvConfig",
     "`gym.make(id, key=value)`, `EnvConfig(...)`, or `env.key=value` on `mmrep collect` / `mmrep policy train`"),
    ("mmrep train", "", "mmrep.config:TrainConfig", "`mmrep train key=value`; `configs/train.yaml`"),
    ("mmrep evaluate", "", "mmrep.config:EvaluateConfig", "`mmrep evaluate key=value`; `configs/evaluate.yaml`"),
    ("mmrep policy train", "", "mmrep.config:PolicyConfig", "`mmrep policy train key=value`; `configs/policy.yaml`"),
    ("mmrep policy eval", "", "mmrep.config:PolicyEvalConfig",
     "`mmrep policy eval key=value`; `configs/policy_eval.yaml`"),
]
# Sections documented once (under their own heading) rather than expanded again inside another.
SHARED = {"EnvConfig": "The environment"}


def _class(spec: str) -> type:
    module, _, name = spec.partition(":")
    return getattr(importlib.import_module(module), name)


def _render_message(node: ast.AST, module: Any) -> str:
    """A ``ValueError`` message as a rule: f-string values become their names (module constants
    resolved), and the ``got ...`` tail (the offending value) is cut."""
    if isinstance(node, ast.Constant) and isinstance(node.value, str):
        text = node.value
    elif isinstance(node, ast.JoinedStr):
        parts = []
        for v in node.values:
            if isinstance(v, ast.Constant):
                parts.append(str(v.value))
            else:
                expr = v.value
                if isinstance(expr, ast.Name) and hasattr(module, expr.id):
                    value = getattr(module, expr.id)
                    parts.append(", ".join(map(str, value)) if isinstance(value, (tuple, list)) else str(value))
                else:
                    parts.append("…")
        text = "".join(parts)
    else:
        return ""
    text = re.split(r",? got\b|; got\b| \(got\b", text)[0]
    return text.strip().rstrip(":,;")


def _rules(cls: type) -> list[str]:
    """Every rule a ``validate`` of ``cls`` (or of the class that owns it) states, as text."""
    module = sys.modules[cls.__module__]
    validate = getattr(cls, "validate", None)
    if validate is None:
        return []
    tree = ast.parse(textwrap.dedent(inspect.getsource(validate)))
    rules: list[str] = []
    for node in ast.walk(tree):
        if isinstance(node, ast.Raise) and isinstance(node.exc, ast.Call) and node.exc.args:
            rule = _render_message(node.exc.args[0], module)
            if rule:
                rules.append(rule)
        if isinstance(node, ast.Call) and getattr(node.func, "id", "") == "_positive":
            prefix = next((k.value.value for k in node.keywords if k.arg == "prefix"), "")
            for arg in node.args[1:]:
                if isinstance(arg, ast.Constant):
                    rules.append(f"{prefix}{arg.value} must be a positive finite number")
    return rules


def _rules_for(name: str, section: str, rules: list[str]) -> list[str]:
    """The rules that name field ``name`` of ``section`` (``controller.kp_pos`` or bare ``kp_pos``)."""
    full = f"{section}.{name}" if section else name
    pattern = re.compile(rf"(?<![\w.]){re.escape(full)}(?!\w)")
    return [r for r in rules if pattern.search(r)]


def _default(f: dataclasses.Field) -> Any:
    if f.default is not dataclasses.MISSING:
        return f.default
    if f.default_factory is not dataclasses.MISSING:
        return f.default_factory()
    return dataclasses.MISSING


def _fmt(value: Any) -> str:
    if value is dataclasses.MISSING:
        return "required"
    if isinstance(value, tuple):
        value = list(value)
    text = repr(value).replace("|", "\\|")
    return f"`{text}`" if len(text) <= 60 else f"`{text[:57]}...`"


def _type(f: dataclasses.Field) -> str:
    t = f.type if isinstance(f.type, str) else getattr(f.type, "__name__", str(f.type))
    return f"`{t}`".replace("|", "\\|")


def _table(cls: type, key_prefix: str, rules: list[str], section: str, owner_rules: list[str]) -> list[str]:
    from mmrep.confighelp import field_comments

    comments = field_comments(cls)
    rows = ["| key | type | default | unit and meaning | validation |", "| --- | --- | --- | --- | --- |"]
    nested: list[tuple[str, type]] = []
    for f in dataclasses.fields(cls):
        default = _default(f)
        if dataclasses.is_dataclass(default):
            nested.append((f.name, type(default)))
            continue
        found = (_rules_for(f.name, "", rules) + _rules_for(f.name, section, rules)
                 + _rules_for(f.name, section, owner_rules))
        found = list(dict.fromkeys(found))
        meaning = comments.get(f.name, "").replace("|", "\\|")
        check = "<br>".join(r.replace("|", "\\|") for r in found) or "type checked by Hydra"
        rows.append(f"| `{key_prefix}{f.name}` | {_type(f)} | {_fmt(default)} | {meaning} | {check} |")
    return rows + [""], nested


def render() -> str:
    """The whole reference page body (Markdown)."""
    sys.path.insert(0, str(ROOT))
    out: list[str] = []
    for heading, prefix, spec, how in SECTIONS:
        cls = _class(spec)
        out += [f"## {heading}", "", f"`{cls.__module__}.{cls.__name__}`. Set with {how}.", ""]
        doc = inspect.getdoc(cls) or ""
        if doc and not doc.startswith("Everything"):
            out += [doc.splitlines()[0], ""]
        rules = _rules(cls)
        table, nested = _table(cls, prefix, rules, "", [])
        out += table
        for name, sub in nested:
            if sub.__name__ in SHARED and SHARED[sub.__name__] != heading:
                anchor = SHARED[sub.__name__].lower().replace(" ", "-")
                out += [f"`{prefix}{name}`: every field of [{SHARED[sub.__name__].lower()}](#{anchor}), "
                        f"as `{prefix}{name}.<field>`.", ""]
                continue
            out += [f"### `{prefix}{name}`", "", f"`{sub.__module__}.{sub.__name__}`. "
                    + (inspect.getdoc(sub) or "").split("\n\n")[0].replace("\n", " "), ""]
            sub_table, _ = _table(sub, f"{prefix}{name}.", _rules(sub), name, rules)
            out += sub_table
    return "\n".join(out)


CLI_PLACEHOLDER = "<!-- cli-reference -->"
GROUPS_PLACEHOLDER = "<!-- config-groups -->"


def _yaml_summary(path: Path) -> str:
    """The comment at the top of a config file, as one line (without Hydra's ``@package`` line)."""
    lines = []
    for line in path.read_text().splitlines():
        if not line.startswith("#"):
            break
        text = line.lstrip("# ").strip()
        if not text.startswith("@package"):
            lines.append(text)
    return " ".join(lines).replace("|", "\\|")


def render_groups() -> str:
    """Every config group (``configs/<group>/``) and its options, each with the comment its file opens with."""
    import yaml

    # a group no command's defaults list names is added with a leading "+" (+paper=ROW)
    named = {next(iter(d)) for app in (ROOT / "configs").glob("*.yaml")
             for d in (yaml.safe_load(app.read_text()) or {}).get("defaults", []) if isinstance(d, dict)}
    out = []
    for folder in sorted(p for p in (ROOT / "configs").iterdir() if p.is_dir()):
        key = folder.name if folder.name in named else "+" + folder.name
        out += [f"### `{key}=`", "", "| option | what it is |", "| --- | --- |"]
        for path in sorted(folder.glob("*.yaml")):
            out.append(f"| `{key}={path.stem}` | {_yaml_summary(path) or '(no description)'} |")
        out.append("")
    return "\n".join(out)


def render_cli() -> str:
    """``mmrep --help`` and every command's ``--help``, as the command prints them."""
    sys.path.insert(0, str(ROOT))
    from mmrep.cli import COMMANDS, _overview, command_help

    out = ["```text", "$ mmrep --help", _overview(), "```", ""]
    for name in COMMANDS:
        out += [f"## mmrep {name}", "", "```text", f"$ mmrep {name} --help", command_help(name), "```", ""]
    return "\n".join(out)


def on_page_markdown(markdown: str, page: Any, config: Any, files: Any) -> str:
    """mkdocs hook: fill the placeholders of the configuration and command-line reference pages."""
    if PLACEHOLDER in markdown:
        markdown = markdown.replace(PLACEHOLDER, render())
    if CLI_PLACEHOLDER in markdown:
        markdown = markdown.replace(CLI_PLACEHOLDER, render_cli())
    if GROUPS_PLACEHOLDER in markdown:
        markdown = markdown.replace(GROUPS_PLACEHOLDER, render_groups())
    return markdown


if __name__ == "__main__":
    print(render())
