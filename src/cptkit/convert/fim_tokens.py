"""Write the FIM special tokens into a release's tokenizer files: the reserved Llama-3 slots the trainer used
(`cptkit.mix.fim.LLAMA3_FIM_TOKENS`) get their FIM names in `tokenizer.json` and `tokenizer_config.json`, so
`tokenizer("<|fim_prefix|>...", add_special_tokens=False)` gives the ids the model was trained on.

`cptkit convert mcore-to-hf` calls `apply_fim_tokens` when the checkpoint's cptkit_state.json records FIM
(`mixture.fim`), or when asked with `--fim-tokens`. Meta's tiktoken `tokenizer.model` names its specials by position,
not in the file, so it is left as it is (it keeps encoding the same ids).

    python -c "from cptkit.convert.fim_tokens import apply_fim_tokens; print(apply_fim_tokens('release_dir'))"
"""

from __future__ import annotations

import json
from pathlib import Path

from cptkit.errors import UserError
from cptkit.mix.fim import LLAMA3_FIM_TOKENS
from cptkit.util import atomic


def checkpoint_used_fim(ckpt: Path) -> bool:
    """True if the trainer recorded FIM sources in this checkpoint's cptkit_state.json (`mixture.fim`)."""
    try:
        state = json.loads((Path(ckpt) / "cptkit_state.json").read_text())
    except (OSError, ValueError):
        return False
    mixture = state.get("mixture") if isinstance(state, dict) else None
    return bool(isinstance(mixture, dict) and mixture.get("fim"))


def apply_fim_tokens(folder: str | Path) -> list[str]:
    """Rename the reserved slots in `folder`'s tokenizer.json / tokenizer_config.json; returns the files changed.

    A slot already named for FIM is left alone; a slot holding anything but its reserved name (another vocabulary)
    is an error, since renaming it would change a real token.
    """
    folder = Path(folder)
    rename = {tid: (name, reserved) for name, tid, reserved in LLAMA3_FIM_TOKENS.values()}
    changed = []
    tj = folder / "tokenizer.json"
    if tj.is_file():
        doc = json.loads(tj.read_text(encoding="utf-8"))
        by_id = {t["id"]: t for t in doc.get("added_tokens", [])}
        for tid, (name, reserved) in rename.items():
            _rename(by_id.get(tid), "content", name, reserved, tj)
        atomic.write_text(tj, json.dumps(doc, ensure_ascii=False, indent=2) + "\n")
        changed.append(tj.name)
    tc = folder / "tokenizer_config.json"
    if tc.is_file():
        doc = json.loads(tc.read_text(encoding="utf-8"))
        decoder = doc.get("added_tokens_decoder", {})
        for tid, (name, reserved) in rename.items():
            _rename(decoder.get(str(tid)), "content", name, reserved, tc)
        extra = [n for n, _, _ in LLAMA3_FIM_TOKENS.values()]
        doc["additional_special_tokens"] = [
            *[t for t in doc.get("additional_special_tokens", []) if t not in extra],
            *extra,
        ]
        atomic.write_text(tc, json.dumps(doc, ensure_ascii=False, indent=2) + "\n")
        changed.append(tc.name)
    return changed


def _rename(entry: dict | None, key: str, name: str, reserved: str, file: Path) -> None:
    if entry is None:
        raise UserError(f"no added token for {reserved} (not a Llama-3 tokenizer?)", file=str(file))
    if entry[key] not in (reserved, name):
        raise UserError(f"the FIM slot for {name} holds {entry[key]!r}, not {reserved}", file=str(file))
    entry[key] = name
