"""datatrove's readers, made strict: every input record becomes a Document, or the run stops with a clear error.

datatrove skips a record with empty text and a line that is not JSON, with a log warning. For curation both are
wrong: an empty file is a record the pipeline must account for (the syntax stage keeps it, pylint drops it with
`pylint_no_score`), and a corrupt line is bad input the user must hear about (file, line, one line, exit 2).
A record without the text field at all is also bad input (usually a wrong `text_field`).
"""

from __future__ import annotations

from datatrove.data import Document
from datatrove.pipeline.readers import JsonlReader, ParquetReader

from cptkit.errors import UserError


class _Strict:
    def get_document_from_dict(self, data: dict, source_file: str, id_in_file: int | str):
        if self.text_key not in data:
            raise UserError(
                f"record {id_in_file} has no field {self.text_key!r} (fields: {', '.join(sorted(data)) or 'none'})",
                file=source_file,
                field="input.text_field",
            )
        parsed = self.adapter(data, source_file, id_in_file)
        text = parsed.get("text")
        if not isinstance(text, str):
            raise UserError(f"record {id_in_file}: {self.text_key!r} is not a string", file=source_file)
        return Document(text=text, id=str(parsed["id"]), metadata=parsed.get("metadata") or {})


class StrictJsonlReader(_Strict, JsonlReader):
    def read_file(self, filepath: str):
        import orjson

        with self.data_folder.open(filepath, "r", compression=self.compression) as f:
            for li, line in enumerate(f):
                with self.track_time():
                    try:
                        record = orjson.loads(line)
                    except orjson.JSONDecodeError as e:
                        raise UserError(f"line {li + 1} is not JSON ({e})", file=filepath) from None
                    if not isinstance(record, dict):
                        raise UserError(f"line {li + 1} is not a JSON object", file=filepath)
                    document = self.get_document_from_dict(record, filepath, li)
                yield document


class StrictParquetReader(_Strict, ParquetReader):
    pass
