"""One pydantic `ValidationError` → one `UserError` line: `FILE: FIELD: message`.

The first problem is reported (fix it, run again); the others are counted, so a user knows there are more. The file
is the one that set the field (`Origins.file_of`): with `inherit:` that may be the base, with overrides
"command line".
"""

from __future__ import annotations

from collections.abc import Callable

from pydantic import ValidationError

from cptkit.config.keys import field_path
from cptkit.errors import UserError

# Messages pydantic words for programmers; the value is already in them or adds nothing.
_NO_INPUT = ("missing", "value_error", "assertion_error", "extra_forbidden")
_MAX_INPUT_CHARS = 80


def _shown(value: object) -> str:
    text = " ".join(repr(value).split())
    return text if len(text) <= _MAX_INPUT_CHARS else text[: _MAX_INPUT_CHARS - 3] + "..."


def user_error(
    e: ValidationError, file_of: Callable[[str], str | None] | str | None, *, prefix: tuple[str, ...] = ()
) -> UserError:
    """The first of `e`'s problems as a `UserError`; `prefix` is the dotted location of the validated object (e.g.
    ("model", "config") when a recipe's `model.config` is validated as a `ModelConfig`)."""
    errors = e.errors(include_url=False)
    first = errors[0]
    field = field_path((*prefix, *first["loc"]))
    if first["type"] == "missing":
        message = "required field is missing"
    elif first["type"] == "extra_forbidden":
        message = "unknown key"
    else:
        message = str(first["msg"]).removeprefix("Value error, ").removeprefix("Assertion failed, ")
        if first["type"] not in _NO_INPUT and "input" in first:
            message += f" (got {_shown(first['input'])})"
    more = len(errors) - 1
    if more:
        message += f" (and {more} more problem{'s' if more > 1 else ''})"
    file = file_of(field) if callable(file_of) else file_of
    return UserError(message, file=file, field=field or None)
