"""The one schema → Markdown generator (`cptkit.config.docgen`): both references (docs/mixture.md, docs/recipe.md)
are its tables; their drift tests are tests/mix/test_docs.py and tests/train/test_recipe.py."""

from __future__ import annotations

from enum import StrEnum
from typing import Annotated, Any, Literal

from pydantic import BaseModel, BeforeValidator, Field, field_validator

from cptkit.config.docgen import DocStyle, table
from cptkit.util.units import parse_tokens


def _tokens(v: Any) -> int:
    return parse_tokens(v)


class Fmt(StrEnum):
    a = "a"
    b = "b"


class Sub(BaseModel):
    x: int = 1


class Toy(BaseModel):
    budget: Annotated[int, BeforeValidator(_tokens)] = Field(description="Tokens | to train on.")
    steps: int | None = Field(None, gt=0, description="Optimizer steps.")
    warm: int | None = Field(None, description="Warmup tokens.")
    kind: Literal["x", "y"] = "x"
    fmt: Fmt = Fmt.a
    on: bool = True
    rate: float = 0.5
    sub: Sub = Field(default_factory=Sub)
    subs: dict[str, Sub] | None = None
    free: dict[str, Any] = Field(default_factory=dict)
    names: list[str] = Field(default_factory=list)

    @field_validator("warm", mode="before")
    @classmethod
    def _tokens(cls, v: Any) -> Any:
        return None if v is None else parse_tokens(v)


def rows(style: DocStyle) -> dict[str, str]:
    text = table(Toy, style)
    return {line.split(" | ")[0][3:-1]: line for line in text.splitlines()[2:]}


def test_mixture_style_and_recipe_style_render_the_same_fields_their_way():
    mix = rows(DocStyle())
    assert mix["budget"] == "| `budget` | tokens | **required** | Tokens \\| to train on. |"
    assert mix["steps"] == "| `steps` | integer | — | Optimizer steps. |"
    assert mix["sub"].startswith("| `sub` | [Sub](#sub) | (section) |")
    assert mix["subs"].startswith("| `subs` | map of name → [Sub](#sub) | — |")
    recipe = rows(DocStyle(none_default="`null`", or_null=True, constraints=True, link_models=False))
    assert recipe["steps"] == "| `steps` | integer > 0 or null | `null` | Optimizer steps. |"
    assert recipe["warm"].startswith("| `warm` | tokens or null | `null` |")  # a `_tokens` before-validator
    assert recipe["sub"].startswith("| `sub` | map (table below) | (section) |")
    for style in (DocStyle(), DocStyle(or_null=True, constraints=True, link_models=False)):
        r = rows(style)
        assert r["kind"].startswith("| `kind` | one of `x`, `y` | `x` |")
        assert r["fmt"].startswith("| `fmt` | one of `a`, `b` | `a` |")
        assert r["on"].startswith("| `on` | boolean | `true` |") and r["rate"].startswith("| `rate` | number | `0.5` |")
        assert r["free"].startswith("| `free` | map | `{}` |") and r["names"].startswith("| `names` | list of string |")


def test_extra_columns_come_from_the_caller():
    text = table(Toy, DocStyle(), columns=("key", "unit", "type"), cells=lambda name, info: {"unit": name.upper()})
    assert text.splitlines()[0] == "| key | unit | type |" and text.splitlines()[1] == "|---|---|---|"
    assert "| `budget` | BUDGET | tokens |" in text
