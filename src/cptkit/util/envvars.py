"""`${VAR}` expansion from the environment, for paths in mixtures, recipes and cluster profiles.

Unlike `os.path.expandvars`, an unset variable is an error (naming the variable and where it was used) instead of being
left in the string, so a path like `${DATA_ROOT}/ja_wiki` never silently becomes a relative path. `$$` escapes a
literal `$`. `${VAR:-default}` uses `default` when VAR is unset or empty, as in the shell.
"""

from __future__ import annotations

import os
import re
from collections.abc import Mapping

from cptkit.errors import UserError

_PATTERN = re.compile(r"\$\$|\$\{([A-Za-z_][A-Za-z0-9_]*)(?::-([^}]*))?\}")


def expand(
    value: str, *, file: str | None = None, field: str | None = None, env: Mapping[str, str] | None = None
) -> str:
    env = os.environ if env is None else env

    def sub(m: re.Match) -> str:
        if m.group(0) == "$$":
            return "$"
        name, default = m.group(1), m.group(2)
        got = env.get(name)
        if got:
            return got
        if default is not None:
            return default
        raise UserError(f"environment variable ${{{name}}} is not set (used in {value!r})", file=file, field=field)

    return _PATTERN.sub(sub, value)


def variables_in(value: str) -> list[str]:
    """Names of the `${VAR}` references in `value` that have no default."""
    return [m.group(1) for m in _PATTERN.finditer(value) if m.group(1) and m.group(2) is None]
