"""Stage-1 syntax, comment ratio/penalty and the exp-4 language filter against the public implementation's own
answers on the hand-made set (tests/curate/data/reference_filtering.json, made by make_reference.py).

Run on CPU: `.venv/bin/pytest tests/curate/test_checks.py -q`.
"""

from __future__ import annotations

import sys

import pytest
from curatehelp import cases, reference

from cptkit.curate import checks

CASES = cases()
REF = reference()


def test_reference_was_made_with_this_python_minor():
    # compile() decides stage 1: a fixture from another Python minor could disagree for reasons unrelated to us.
    assert REF["python"].rsplit(".", 1)[0] == f"{sys.version_info.major}.{sys.version_info.minor}"


@pytest.mark.parametrize("name", sorted(REF["cases"]))
def test_syntax_and_language_match_public_tool(name):
    code, ref = CASES[name]["code"], REF["cases"][name]
    error = checks.syntax_check(code)
    assert (error is None) == (ref["syntax_issues"] == [])
    if error is not None:
        assert [error] == ref["syntax_issues"]  # the same message text as the public tool records
    assert checks.language_check(code)[0] == ref["language_type"]
    # and what the hand-made set was built to show
    assert (error is None) == CASES[name]["syntax"]
    if "language" in CASES[name]:
        assert (checks.language_check(code)[0] == checks.LANG_OK) == CASES[name]["language"]


def test_the_comparison_is_not_blind():
    # A Python 2 file passes no check that compares with the reference; a broken checker would be caught.
    ref = REF["cases"]["python2_print"]
    assert checks.syntax_check(CASES["python2_print"]["code"]) is not None
    assert ref["syntax_issues"] and checks.syntax_check("print('hi')\n") is None
    assert checks.language_check(CASES["korean_comments"]["code"])[0] != REF["cases"]["good"]["language_type"]


def test_hand_made_set_covers_what_the_issue_asks():
    names = set(CASES)
    assert {"python2_print", "python2_except", "empty", "korean_comments", "russian_string"} <= names
    assert CASES["empty"]["code"] == ""


def test_language_ranges():
    ok, bad = checks.LANG_OK, checks.LANG_OTHER
    assert checks.language_check("# 日本語のコメント ｶﾅ\nx = 1\n")[0] == ok
    assert checks.language_check("# 中文注释\nx = 1\n")[0] == ok  # CJK ideographs pass: Chinese too
    assert checks.language_check("# ＡＢＣ\nx = 1\n")[0] == bad  # full-width forms U+FF01-FF5E fail
    assert checks.language_check("x = 'é'\n")[0] == bad  # Latin-1 is outside printable ASCII
    assert checks.language_check("ñ = 1\n")[0] == ok  # names are not strings or comments
    assert checks.language_check("x = (\n")[0] == checks.LANG_TOKEN_ERROR


def test_comment_ratio_counts_tokens_not_lines():
    # tokens: COMMENT NL NAME OP NUMBER NEWLINE ENDMARKER -> 1 comment of 7
    assert checks.comment_ratio("# c\nx = 1\n") == pytest.approx(1 / 7)
    assert checks.comment_ratio("") == 0.0
    assert checks.comment_ratio("x = (\n") == 0.0  # a tokenize error counts as no comments


def test_comment_penalty():
    assert checks.apply_comment_penalty(8.0, 0.0) == 8.0
    assert checks.apply_comment_penalty(8.0, 0.25) == 6.0
    assert checks.apply_comment_penalty(8.0, 1.0) == 0.0


def test_parse_pylint_score():
    text = "************* Module x\nx.py:1:0: W0611\n\n----\nYour code has been rated at 7.50/10 (previous run: 1/10)\n"
    assert checks.parse_pylint_score(text) == 7.5
    assert checks.parse_pylint_score("Your code has been rated at -2.00/10") == -2.0
    assert checks.parse_pylint_score("") is None
