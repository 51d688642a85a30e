"""One config layer for every cptkit file: recipes, mixtures, cluster profiles, mapping specs, eval suites and
`cptkit_model.json` are all read by `ConfigModel.from_file(path, overrides)`.

- `base.py`: `Section` (unknown keys forbidden) and `ConfigModel` (`from_file`: inherit, overrides, "did you mean",
  `${VAR}`, one-line errors);
- `source.py`: YAML/JSON reading, `inherit:`, which file set each key;
- `overrides.py`: `key=value` from the command line;
- `keys.py`: unknown keys with the closest known one; `KeysOf` for free-form maps with known keys;
- `errors.py`: pydantic `ValidationError` → one `UserError` line;
- `docgen.py`: schema → Markdown field tables (docs/mixture.md, docs/recipe.md).

Torch-free, like everything a login node runs.
"""

from cptkit.config.base import ConfigModel, Section
from cptkit.config.errors import user_error
from cptkit.config.keys import KeysOf, field_path
from cptkit.config.source import COMMAND_LINE, Origins

__all__ = ["COMMAND_LINE", "ConfigModel", "KeysOf", "Origins", "Section", "field_path", "user_error"]
