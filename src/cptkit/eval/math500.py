r"""MATH-500 as Swallow's `math_500` task (their lm-eval 0.4.2 fork) scored the MATH column of the Swallow tables.

- Data: HuggingFaceH4/MATH-500 (the 500-problem test subset); the gold answer is re-derived from the solution: the
  last `\boxed{…}`, unboxed, Minerva-normalised (`process_docs`).
- Prompt: Minerva's four worked problems written into the prompt ("Problem:\n…\n\nSolution:\n…\nFinal Answer: The
  final answer is $…$. I hope it is correct.", blank line between), then "Problem:\n{problem}\n\nSolution:". lm-eval
  sees a 0-shot task (the suite's 4 shots are these, as there: a config with num_fewshot 0 ignores the CLI's 4).
- Generation: greedy, at most 2,048 new tokens, stop at "Problem:", "</s>", "<|im_end|>" or "I hope it is correct".
- Scoring: the last `\boxed{…}` of the output, or else the "Final Answer: The final answer is …" sentence; normalised
  as in Minerva (Lewkowycz et al. 2022, appendix D: substitutions, unit words removed, TeX shorthand expanded); correct
  when equal to the gold answer as strings or, parsed by sympy's LaTeX parser, their difference simplifies to 0
  (5 s limit per comparison).

Checked against the fork's own code: tests/eval/test_parity.py. Try it on a CPU:
    python -c "from cptkit.eval.math500 import normalize; print(normalize('\\frac12 \\text{ inches}'))"
"""

from __future__ import annotations

import re
import signal
from contextlib import contextmanager

INVALID = "[invalidanswer]"
_FINAL = re.compile(r"Final Answer: The final answer is(.*?). I hope it is correct.")

# (problem, solution, final answer) of Minerva's 4-shot prompt, as written in the fork's prompt (including the stray
# "}" after the first problem).
EXEMPLARS = [
    (
        r"Find the domain of the expression  $\frac{\sqrt{x-2}}{\sqrt{5-x}}$.}",
        r"The expressions inside each square root must be non-negative. Therefore, $x-2 \ge 0$, so $x\ge2$, and $5 - x "
        r"\ge 0$, so $x \le 5$. Also, the denominator cannot be equal to zero, so $5-x>0$, which gives $x<5$. "
        r"Therefore, the domain of the expression is $\boxed{[2,5)}$.",
        r"[2,5)",
    ),
    (
        r"If $\det \mathbf{A} = 2$ and $\det \mathbf{B} = 12,$ then find $\det (\mathbf{A} \mathbf{B}).$",
        r"We have that $\det (\mathbf{A} \mathbf{B}) = (\det \mathbf{A})(\det \mathbf{B}) = (2)(12) = \boxed{24}.$",
        r"24",
    ),
    (
        r"Terrell usually lifts two 20-pound weights 12 times. If he uses two 15-pound weights instead, how many times "
        r"must Terrell lift them in order to lift the same total weight?",
        r"If Terrell lifts two 20-pound weights 12 times, he lifts a total of $2\cdot 12\cdot20=480$ pounds of weight. "
        r" If he lifts two 15-pound weights instead for $n$ times, he will lift a total of $2\cdot15\cdot n=30n$ "
        r"pounds of weight.  Equating this to 480 pounds, we can solve for $n$:" + "\n"
        r"\begin{align*}" + "\n" + r"30n&=480\\" + "\n" + r"\Rightarrow\qquad n&=480/30=\boxed{16}" + "\n"
        r"\end{align*}",
        r"16",
    ),
    (
        r"If the system of equations" + "\n\n" + r"\begin{align*}" + "\n" + r"6x-4y&=a,\\" + "\n" + r"6y-9x &=b."
        "\n" + r"\end{align*}has a solution $(x, y)$ where $x$ and $y$ are both nonzero," + "\n"
        r"find $\frac{a}{b},$ assuming $b$ is nonzero.",
        r"If we multiply the first equation by $-\frac{3}{2}$, we obtain" + "\n\n" + r"$$6y-9x=-\frac{3}{2}a.$$Since "
        r"we also know that $6y-9x=b$, we have"
        + "\n\n"
        + r"$$-\frac{3}{2}a=b\Rightarrow\frac{a}{b}=\boxed{-\frac{2}{3}}.$$",
        r"-\frac{2}{3}",
    ),
]
PROMPT = "\n\n".join(
    f"Problem:\n{p}\n\nSolution:\n{s}\nFinal Answer: The final answer is ${a}$. I hope it is correct."
    for p, s, a in EXEMPLARS
)

# Minerva's normalisation lists (Lewkowycz et al. 2022, appendix D)
SUBSTITUTIONS = [
    ("an ", ""), ("a ", ""), (".$", "$"), ("\\$", ""), (r"\ ", ""), (" ", ""), ("mbox", "text"),
    (",\\text{and}", ","), ("\\text{and}", ","), ("\\text{m}", "\\text{}"),
]  # fmt: skip
REMOVED_EXPRESSIONS = [
    "square", "ways", "integers", "dollars", "mph", "inches", "ft", "hours", "km", "units", "\\ldots", "sue",
    "points", "feet", "minutes", "digits", "cents", "degrees", "cm", "gm", "pounds", "meters", "meals", "edges",
    "students", "childrentickets", "multiples", "\\text{s}", "\\text{.}", "\\text{\ns}", "\\text{}^2",
    "\\text{}^3", "\\text{\n}", "\\text{}", r"\mathrm{th}", r"^\circ", r"^{\circ}", r"\;", r",\!", "{,}", '"',
    "\\dots",
]  # fmt: skip


def doc_to_text(doc: dict) -> str:
    return f"{PROMPT}\n\nProblem:\n{doc['problem']}\n\nSolution:"


def last_boxed(text: str) -> str | None:
    """The last `\\boxed{…}` (or `\\fbox{…}`) with its braces balanced; `\\boxed x` up to the next "$"."""
    if "\\boxed " in text:
        return "\\boxed " + text.split("\\boxed ")[-1].split("$")[0]
    start = text.rfind("\\boxed")
    if start < 0:
        start = text.rfind("\\fbox")
        if start < 0:
            return None
    depth = 0
    for i in range(start, len(text)):
        if text[i] == "{":
            depth += 1
        elif text[i] == "}":
            depth -= 1
            if depth == 0:
                return text[start : i + 1]
    return None


def unbox(boxed: str) -> str:
    if boxed.startswith("\\boxed "):
        return boxed[len("\\boxed ") :]
    if not (boxed.startswith("\\boxed{") and boxed.endswith("}")):
        raise ValueError(f"not a \\boxed{{}} expression: {boxed!r}")  # an \fbox: the fork stops on an assertion
    return boxed[len("\\boxed{") : -1]


def final_answer_sentence(text: str) -> str:
    found = _FINAL.search(text + "I hope it is correct.")
    return found.group(1).strip() if found else INVALID


def normalize(answer: str) -> str:
    answer = answer.split("=")[-1]
    for before, after in SUBSTITUTIONS:
        answer = answer.replace(before, after)
    for expr in REMOVED_EXPRESSIONS:
        answer = answer.replace(expr, "")
    answer = re.sub(r"(.*?)(\$)(.*?)(\$)(.*)", "$\\3$", answer)  # the first $…$ span
    answer = re.sub(r"(\\text\{)(.*?)(\})", "\\2", answer)
    answer = re.sub(r"(\\textbf\{)(.*?)(\})", "\\2", answer)
    answer = re.sub(r"(\\overline\{)(.*?)(\})", "\\2", answer)
    answer = re.sub(r"(\\boxed\{)(.*)(\})", "\\2", answer)
    answer = re.sub(r"(frac)([^{])(.)", "frac{\\2}{\\3}", answer)  # \fracab -> \frac{a}{b}
    answer = re.sub(r"(sqrt)([^{])", "sqrt{\\2}", answer)  # \sqrta -> \sqrt{a}
    answer = answer.replace("$", "")
    if answer.replace(",", "").isdigit():  # 100,000 -> 100000
        answer = answer.replace(",", "")
    return answer


@contextmanager
def _time_limit(seconds: int):
    def _raise(signum, frame):
        raise TimeoutError

    previous = signal.signal(signal.SIGALRM, _raise)
    signal.alarm(seconds)
    try:
        yield
    finally:
        signal.alarm(0)
        signal.signal(signal.SIGALRM, previous)


def is_equiv(a: str, b: str) -> bool:
    """Whether sympy finds the two LaTeX answers equal (False when either does not parse, or after 5 s)."""
    import sympy
    from sympy.parsing.latex import parse_latex

    try:
        with _time_limit(5):
            try:
                diff = parse_latex(a) - parse_latex(b)
                return bool(sympy.simplify(diff) == 0)
            except Exception:  # parse errors, unsupported operations: not shown equal
                return False
    except TimeoutError:
        return False


def process_docs(dataset):
    def gold(doc: dict) -> dict:
        boxed = last_boxed(doc["solution"])
        return {"problem": doc["problem"], "solution": doc["solution"], "answer": normalize(unbox(boxed))}

    return dataset.map(gold, remove_columns=[c for c in dataset.column_names if c not in ("problem", "solution")])


def process_results(doc: dict, results: list[str]) -> dict[str, int]:
    output = results[0]
    boxed = last_boxed(output)
    try:
        raw = unbox(boxed) if boxed else final_answer_sentence(output)
    except ValueError:
        return {"exact_match": 0}
    if raw == INVALID:
        return {"exact_match": 0}
    answer = normalize(raw)
    return {"exact_match": int(answer.strip() == doc["answer"].strip() or is_equiv(answer, doc["answer"]))}


def configure(cfg: dict, files: dict) -> None:
    """Render-time: the suite says 4 shots (the table's "4-shot"); they are in the prompt, so lm-eval runs 0-shot."""
    from cptkit.errors import UserError

    shots = cfg.get("num_fewshot")
    if shots not in (0, 4, None):
        raise UserError(
            f"MATH-500's prompt holds Minerva's 4 worked problems; shots must be 4, got {shots}", field="shots"
        )
    cfg["num_fewshot"] = 0
