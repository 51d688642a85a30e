"""The config base itself (`cptkit.config`), on a small schema of its own: inherit, ${VAR}, overrides, unknown keys,
the error converter. Each loader built on it is tested in test_loaders.py."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Annotated, Any, ClassVar

import pytest
from pydantic import Field, model_validator

from cptkit.config import ConfigModel, KeysOf, Section
from cptkit.config.overrides import parse_key
from cptkit.errors import UserError


class Shape(Section):
    layers: int = Field(gt=0)
    width: int = 8


class Item(Section):
    name: str
    tokens: int = 0


class Opt(Section):
    lr: float = Field(gt=0)
    min_lr: float = 0.0

    @model_validator(mode="after")
    def _lrs(self) -> Opt:
        if self.min_lr > self.lr:
            raise ValueError("min_lr is larger than lr")
        return self


class Demo(ConfigModel):
    file_kind: ClassVar[str] = "demo file"
    merge_whole: ClassVar[frozenset[str]] = frozenset({"shape"})

    name: str
    path: str = "out/${name}"
    opt: Opt
    shape: Annotated[dict[str, Any] | None, KeysOf(Shape)] = None
    items: list[Item] = Field(default_factory=list)
    groups: dict[str, Item] = Field(default_factory=dict)

    @classmethod
    def variables(cls, data: dict[str, Any]) -> dict[str, str]:
        return {"name": data["name"]} if isinstance(data.get("name"), str) else {}


def write(path: Path, text: str) -> Path:
    path.write_text(text, encoding="utf-8")
    return path


def error(call) -> str:
    with pytest.raises(UserError) as e:
        call()
    line = e.value.one_line()
    assert "\n" not in line
    return line


BASE = "name: base\nopt: {lr: 1.0e-3}\nshape: {layers: 2, width: 16}\nitems: [{name: a, tokens: 1}]\n"


def test_inherit_merges_sections_replaces_whole_keys_and_lists(tmp_path):
    write(tmp_path / "base.yaml", BASE)
    sub = tmp_path / "sub"
    sub.mkdir()
    child = write(sub / "child.yaml", "inherit: ../base.yaml\nopt: {min_lr: 1.0e-4}\nshape: {layers: 4}\n")
    d = Demo.from_file(child, env={})
    assert d.opt.lr == 1e-3 and d.opt.min_lr == 1e-4  # merged key by key
    assert d.shape == {"layers": 4}  # replaced whole: width is not inherited
    assert [i.name for i in d.items] == ["a"] and d.name == "base" and d.path == "out/base"


def test_inherit_loop_and_missing_base_name_the_file(tmp_path):
    write(tmp_path / "a.yaml", "inherit: b.yaml\n")
    write(tmp_path / "b.yaml", "inherit: a.yaml\n")
    assert "inherit from each other in a loop" in error(lambda: Demo.from_file(tmp_path / "a.yaml"))
    write(tmp_path / "c.yaml", "inherit: nope.yaml\n")
    assert error(lambda: Demo.from_file(tmp_path / "c.yaml")).startswith(f"{tmp_path}/c.yaml: inherit: base file")
    assert error(lambda: Demo.from_file(tmp_path / "x.yaml")) == f"{tmp_path}/x.yaml: demo file not found"


def test_error_names_the_file_that_set_the_value(tmp_path):
    write(tmp_path / "base.yaml", BASE.replace("lr: 1.0e-3", "lr: -1"))
    child = write(tmp_path / "child.yaml", "inherit: base.yaml\nname: child\n")
    assert error(lambda: Demo.from_file(child)).startswith(f"{tmp_path}/base.yaml: opt.lr: Input should be greater")
    # A rule over a whole section names the file that set its keys, and counts the other problems.
    write(tmp_path / "base.yaml", BASE.replace("lr: 1.0e-3", "lr: 1.0e-3, min_lr: 1"))
    assert error(lambda: Demo.from_file(child)) == f"{tmp_path}/base.yaml: opt: min_lr is larger than lr"
    bad = write(tmp_path / "bad.yaml", "name: 3\nopt: {lr: x}\n")
    line = error(lambda: Demo.from_file(bad))
    assert line.startswith(f"{bad}: name: Input should be a valid string (got 3) (and 1 more problem)"), line
    assert error(lambda: Demo.from_file(write(tmp_path / "m.yaml", "name: m\n"))) == (
        f"{tmp_path}/m.yaml: opt: required field is missing"
    )


@pytest.mark.parametrize(
    ("text", "field", "hint"),
    [
        ("opt: {lr: 1, min_rl: 0}", "opt.min_rl", "did you mean 'opt.min_lr'?"),  # dotted: pasteable as an override
        ("lr: 1", "lr", "did you mean 'opt.lr'?"),  # the right key in the wrong section
        ("shape: {layrs: 2}", "shape.layrs", "did you mean 'shape.layers'?"),  # keys of a KeysOf map
        ("items: [{name: a}, {name: b, tokenz: 1}]", "items[1].tokenz", "did you mean 'tokens'?"),  # in a list item
        ("groups: {g: {nam: a}}", "groups.g.nam", "did you mean 'name'?"),  # in a map entry
        ("zzzzzz: 1", "zzzzzz", "valid keys here: name, path, opt, shape, items, groups"),
    ],
)
def test_unknown_keys_suggest_the_closest(tmp_path, text, field, hint):
    path = write(tmp_path / "d.yaml", f"name: d\nopt: {{lr: 1}}\n{text}\n".replace("opt: {lr: 1}\nopt", "opt"))
    assert error(lambda: Demo.from_file(path)) == f"{path}: {field}: unknown key; {hint}"


def test_overrides_are_typed_dotted_and_named_command_line(tmp_path):
    path = write(tmp_path / "d.yaml", BASE)
    d = Demo.from_file(path, ["opt.lr=2e-3", "shape.width=32", "items[0].tokens=7", "items.0.name=z", "name=n"])
    assert d.opt.lr == 2e-3 and d.shape == {"layers": 2, "width": 32} and d.path == "out/n"
    assert d.items[0].tokens == 7 and d.items[0].name == "z"
    assert error(lambda: Demo.from_file(path, ["opt.lr=abc"])).startswith("command line: opt.lr: Input should be")
    assert error(lambda: Demo.from_file(path, ["opt.lrr=1"])) == (
        "command line: opt.lrr: unknown key; did you mean 'opt.lr'?"
    )
    assert "not of the form key=value" in error(lambda: Demo.from_file(path, ["opt.lr"]))
    assert "items has 1 items; no item 3" in error(lambda: Demo.from_file(path, ["items[3].tokens=1"]))
    assert parse_key("a.b[2].c") == parse_key("a.b.2.c") == ("a", "b", 2, "c")


def test_variables_expand_in_every_string_with_defaults_and_escapes(tmp_path):
    text = "name: ${WHO}\npath: ${ROOT:-/r}/$${x}\nopt: {lr: '${LR}'}\nitems: [{name: '${WHO}-1'}]\n"
    path = write(tmp_path / "d.yaml", text)
    d = Demo.from_file(path, env={"WHO": "me", "LR": "0.5"})
    assert (d.name, d.path, d.opt.lr, d.items[0].name) == ("me", "/r/${x}", 0.5, "me-1")
    line = error(lambda: Demo.from_file(path, env={"WHO": "me"}))
    assert line == f"{path}: opt.lr: environment variable ${{LR}} is not set (used in '${{LR}}')"


def test_duplicate_keys_yaml_errors_and_json(tmp_path):
    dup = write(tmp_path / "d.yaml", "name: a\nopt: {lr: 1}\nname: b\n")
    assert error(lambda: Demo.from_file(dup)) == f"{dup}: line 3: invalid YAML: duplicate key 'name'"
    assert "invalid YAML" in error(lambda: Demo.from_file(write(tmp_path / "e.yaml", "name: [x\n")))
    assert "must be a mapping" in error(lambda: Demo.from_file(write(tmp_path / "l.yaml", "- a\n")))
    good = write(tmp_path / "d.json", json.dumps({"name": "j", "opt": {"lr": 1}}))
    assert Demo.from_file(good).name == "j"
    bad = write(tmp_path / "b.json", '{"name": "j", "opt": {"lr": 1}, "name": "k"}')
    assert error(lambda: Demo.from_file(bad)) == f"{bad}: invalid JSON: duplicate key 'name'"
    typo = write(tmp_path / "t.json", json.dumps({"name": "j", "opt": {"lr": 1, "mn_lr": 0}}))
    assert error(lambda: Demo.from_file(typo)) == f"{typo}: opt.mn_lr: unknown key; did you mean 'opt.min_lr'?"
