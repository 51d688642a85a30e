"""Real text for the demo, assembled from what every Python + Debian/Ubuntu machine already has (nothing downloaded).

- code: the Python standard library's own `.py` files (PSF license), tests excluded, one document per file;
- en:   the Python documentation's topic pages shipped in the standard library (`pydoc_data.topics`, PSF license),
        then the English manual pages under /usr/share/man/man{1,5,8} (each under its package's license);
- ja:   the Japanese manual pages installed under /usr/share/man/ja (man-db, dpkg, passwd, ... translations, each under
        its package's license), roff markup stripped; where a machine has none, the Japanese sample texts of CPython's
        codec tests (`test/cjkencodings`).

Each goes to `OUT/raw/<source>/part-000.jsonl` as `{"id": ..., "text": ...}` — the layout `data_mix/demo.yaml` expects.

    python -m cptkit.demo.corpus demo_run          # on CPU, a few seconds
"""

from __future__ import annotations

import gzip
import json
import re
import sys
import sysconfig
from collections.abc import Iterator
from pathlib import Path

from cptkit.errors import UserError
from cptkit.util.atomic import atomic_open

_ROFF_REQUEST = re.compile(r"^[.'][ \t]*\S*")
_ROFF_ESCAPES = [
    (re.compile(r"\\f[BIRP1-4]|\\f\(..|\\f\[[^\]]*\]"), ""),  # font changes
    (re.compile(r"\\s[+-]?\d+"), ""),  # size changes
    (re.compile(r"\\\(em|\\\(en"), "—"),
    (re.compile(r"\\-"), "-"),
    (re.compile(r"\\[|&^%:]"), ""),  # zero-width and hyphenation escapes
    (re.compile(r"\\e"), "\\\\"),
    (re.compile(r"\\\(.."), ""),  # other named glyphs
    (re.compile(r"\\\*\(..|\\\*."), ""),  # strings
]


def roff_to_text(source: str) -> str:
    """Plain text of a man page: requests dropped (section titles kept), inline escapes removed."""
    lines = []
    for line in source.splitlines():
        if line.startswith(('.\\"', "'\\\"")):
            continue
        if _ROFF_REQUEST.match(line):
            # Keep the argument text of headings and font macros (.SH 名前, .B word), drop the rest.
            head, _, rest = line.partition(" ")
            if head in (".SH", ".SS", ".B", ".I", ".BR", ".IR", ".RB", ".BI", ".IB", ".TP", ".IP") and rest:
                line = rest.strip().strip('"')
            else:
                continue
        for pattern, repl in _ROFF_ESCAPES:
            line = pattern.sub(repl, line)
        lines.append(line)
    text = "\n".join(lines)
    return re.sub(r"\n{3,}", "\n\n", text).strip()


def python_code(max_bytes: int) -> Iterator[tuple[str, str]]:
    stdlib = Path(sysconfig.get_paths()["stdlib"])
    used = 0
    for path in sorted(stdlib.glob("*.py")) + sorted(stdlib.glob("[a-z]*/*.py")):
        if "test" in path.parts[len(stdlib.parts) :] or path.name.startswith("test_"):
            continue
        text = path.read_text(encoding="utf-8", errors="replace")
        if used >= max_bytes:
            return
        used += len(text.encode())
        yield str(path.relative_to(stdlib)), text


def _man_pages(paths: list[Path]) -> Iterator[tuple[str, str]]:
    for path in paths:
        opener = gzip.open if path.suffix == ".gz" else open
        try:
            with opener(path, "rt", encoding="utf-8", errors="replace") as f:
                yield str(path), roff_to_text(f.read())
        except (OSError, EOFError):  # a dangling link or a broken archive: not text we want
            continue


def english_docs(max_bytes: int) -> Iterator[tuple[str, str]]:
    from pydoc_data.topics import topics

    docs = ((f"pydoc_data/topics/{name}", topics[name]) for name in sorted(topics))
    man = sorted(p for d in ("man1", "man5", "man8") for p in Path(f"/usr/share/man/{d}").glob("*") if p.is_file())
    used = 0
    for doc_id, text in (*docs, *_man_pages(man)):
        if used >= max_bytes:
            return
        if len(text) < 200 or text.startswith(".so "):  # stubs that only point to another page
            continue
        used += len(text.encode())
        yield doc_id, text


def japanese_docs(max_bytes: int) -> Iterator[tuple[str, str]]:
    used = 0
    pages = sorted(p for p in Path("/usr/share/man/ja").glob("man*/*") if p.is_file())
    for doc_id, text in _man_pages(pages):
        if used >= max_bytes:
            return
        if sum(ord(c) > 0x3000 for c in text) < 50:  # an English page in the ja tree
            continue
        used += len(text.encode())
        yield doc_id, text
    if not pages:
        cjk = Path(sysconfig.get_paths()["stdlib"]) / "test" / "cjkencodings"
        for path in sorted(cjk.glob("*jp*-utf8.txt")) + sorted(cjk.glob("*jis*-utf8.txt")):
            yield f"cpython/test/cjkencodings/{path.name}", path.read_text(encoding="utf-8")


SOURCES = {"code": python_code, "en": english_docs, "ja": japanese_docs}


def build_corpus(out_dir: str | Path, max_bytes_per_source: int = 2_000_000) -> dict[str, dict[str, int]]:
    """Write OUT/raw/{code,en,ja}/part-000.jsonl atomically; return documents and bytes per source."""
    stats = {}
    for name, docs in SOURCES.items():
        path = Path(out_dir) / "raw" / name / "part-000.jsonl"
        n = size = 0
        with atomic_open(path, "w", encoding="utf-8") as f:
            for doc_id, text in docs(max_bytes_per_source):
                if text.strip():
                    f.write(json.dumps({"id": doc_id, "text": text}, ensure_ascii=False) + "\n")
                    n += 1
                    size += len(text.encode())
        if n == 0:
            raise UserError(f"found no {name} text on this machine for the demo", file=str(path))
        stats[name] = {"documents": n, "bytes": size}
    return stats


if __name__ == "__main__":
    out = sys.argv[1] if len(sys.argv) > 1 else "demo_run"
    for source, s in build_corpus(out).items():
        print(f"{source:5s} {s['documents']:6d} documents {s['bytes'] / 1e6:7.2f} MB")
