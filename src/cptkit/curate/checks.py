"""The per-file checks of SwallowCode stages 1-2 and the exp-4 comment-language filter, as pure functions.

They reproduce the public pipeline (rioyokotalab/swallow-code-math, `src/code/pretrain_dataset/filtering.py`):

- syntax: the whole file through `compile(code, "<string>", "exec")`; a SyntaxError (incl. IndentationError, and
  Python 2 code such as `print "x"`) marks the file. The interpreter decides, so its version is recorded with every
  decision (`python_version()`).
- comment ratio: COMMENT tokens / all `tokenize` tokens (the public code names the counter `total_lines`, but it
  counts tokens). A tokenize or indentation error gives 0, as does an empty file.
- comment penalty: ratio 1 -> score 0; ratio > 0 -> score * (1 - ratio).
- language: every STRING and COMMENT token must consist of printable ASCII, CJK punctuation and kana (U+3000-30FF),
  CJK ideographs (U+4E00-9FFF), half-width kana (U+FF66-FF9F) or whitespace; the first token that does not marks
  the file. The labels are the public ones, so counts compare with theirs.

Run one by hand:
    python -c "from cptkit.curate.checks import language_check; print(language_check('# コメント\\nx = 1\\n'))"
"""

from __future__ import annotations

import io
import platform
import re
import tokenize
import warnings

# The messages the public pipeline disables (import-error, missing module/function docstring, line-too-long,
# invalid-name, wrong-import-order, too-few-public-methods, fixme, ungrouped-imports).
PYLINT_DISABLED = ("E0401", "C0114", "C0301", "C0103", "C0116", "C0411", "R0903", "W0511", "C0412")

LANG_OK = "English or Japanese"
LANG_OTHER = "Contains non-English/Japanese characters"
LANG_TOKEN_ERROR = "TokenError in code"
LANG_INDENT_ERROR = "IndentationError in code"

_ALLOWED = re.compile(r"^[\u0020-\u007E\u3000-\u30FF\u4E00-\u9FFF\uFF66-\uFF9F\s\n\t]*$")
_RATED = re.compile(r"Your code has been rated at (-?[0-9.]+)/10")


def python_version() -> str:
    return platform.python_version()


def syntax_check(code: str) -> str | None:
    """None if `code` compiles in exec mode, else the error text (as the public pipeline records it)."""
    try:
        with warnings.catch_warnings():  # invalid escape sequences etc. warn; they are not syntax errors
            warnings.simplefilter("ignore")
            compile(code, "<string>", "exec")
    except SyntaxError as e:
        return f"Syntax error: {e}"
    except ValueError as e:  # a NUL byte in the source: compile refuses it, so does every later stage
        return f"Syntax error: {e}"
    return None


def comment_ratio(code: str) -> float:
    total = comments = 0
    try:
        for tok in tokenize.generate_tokens(io.StringIO(code).readline):
            total += 1
            if tok.type == tokenize.COMMENT:
                comments += 1
    except (tokenize.TokenError, IndentationError, SyntaxError):
        # SyntaxError: 3.12+ tokenizers raise it where 3.11 gives ERRORTOKEN; the public code predates that.
        return 0.0
    return comments / total if total else 0.0


def apply_comment_penalty(score: float, ratio: float) -> float:
    if ratio == 1.0:
        return 0.0
    if ratio > 0:
        return score * (1 - ratio)
    return score


def parse_pylint_score(output: str) -> float | None:
    """The score in pylint's report ("Your code has been rated at 7.50/10 ..."); None when pylint printed none
    (an empty file has no statements to rate). The last match wins, as in the public parser."""
    matches = _RATED.findall(output)
    return float(matches[-1]) if matches else None


def language_check(code: str) -> tuple[str, str | None]:
    """(label, offending token or None): is every string and comment English or Japanese?"""
    try:
        for tok in tokenize.generate_tokens(io.StringIO(code).readline):
            if tok.type in (tokenize.STRING, tokenize.COMMENT) and not _ALLOWED.match(tok.string):
                text = tok.string if len(tok.string) <= 100 else tok.string[:100] + "..."
                return LANG_OTHER, text
    except tokenize.TokenError as e:
        return LANG_TOKEN_ERROR, str(e)
    except IndentationError as e:
        return LANG_INDENT_ERROR, str(e)
    except SyntaxError as e:  # newer tokenizers only; label it like the closest public label
        return LANG_TOKEN_ERROR, str(e)
    return LANG_OK, None
