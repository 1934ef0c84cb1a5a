"""What a config field means, read from the comment beside it in its dataclass: one source for
``mmrep <command> --help`` and the documentation's configuration reference. Torch-free."""

from __future__ import annotations

import inspect
import re


def field_comments(cls: type) -> dict[str, str]:
    """``{field: comment}`` of a dataclass: the comment after ``#`` on the field's line, joined to the
    comment lines just above it. Empty where the source is not available (a zip import)."""
    try:
        lines, _ = inspect.getsourcelines(cls)
    except (OSError, TypeError):
        return {}
    out: dict[str, str] = {}
    above: list[str] = []
    for line in lines[1:]:
        stripped = line.strip()
        if stripped.startswith("#"):
            above.append(stripped.lstrip("# ").strip())
            continue
        m = re.match(r"    (\w+)\s*:[^=]*(?:=.*)?$", line)
        if m and not stripped.startswith(("def ", "class ", "@", '"""', "return")):
            trailing = line.split("  # ", 1)[1].strip() if "  # " in line else ""
            out[m.group(1)] = " ".join([*above, trailing]).strip()
        above = []
    return out
