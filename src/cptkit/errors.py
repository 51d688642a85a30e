"""User-facing errors.

Anything a user can cause (a bad YAML field, a missing file, an inconsistent recipe) raises `UserError`. The CLI
prints it as one line and exits with code 2; it never shows a traceback for these. Bugs in cptkit itself are left as
ordinary exceptions so that they do show a traceback.
"""

from __future__ import annotations


class UserError(Exception):
    """A mistake in the user's input, reported as `file: field: message` on one line."""

    def __init__(self, message: str, *, file: str | None = None, field: str | None = None):
        self.file = str(file) if file is not None else None
        self.field = field
        self.message = message
        super().__init__(self.one_line())

    def one_line(self) -> str:
        parts = [p for p in (self.file, self.field) if p]
        text = " ".join(self.message.split())  # one line, whatever the message held
        return ": ".join([*parts, text])
