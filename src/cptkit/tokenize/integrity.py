"""Is an input file whole? Checks the readers run on every byte they read, so a damaged file is never read short.

Decompressors are not enough on their own: python-zstandard's `stream_reader` returns a clean end of file when the
input stops inside a frame (a `.jsonl.zst` cut at a third read as 1/3 of its documents, exit 0), and an Arrow IPC
stream cut at a message boundary reads as a shorter stream. So:

- zstd: `ZstdFrameChecker` follows the frame structure (RFC 8878: frame header, block headers, checksum; skippable
  frames) over the raw bytes as they stream past, without decompressing; at the end of the file it must stand between
  two frames. Bit flips inside a block are the decompressor's to find (and its content checksum's, written by the
  `zstd` CLI by default).
- gzip: Python's `gzip` already raises on a missing end-of-stream marker and checks every member's CRC-32 and size.
- parquet: the footer is read first (a cut file has none); page decoding errors surface while iterating; page CRCs,
  when the writer stored them, are verified (`page_checksum_verification`).
- Arrow IPC streams (`datasets.save_to_disk`): the file must end with the end-of-stream marker.

A damage raises `DamagedInput` (a `UserError`: one line naming the file); the pipeline makes it fatal or, with
`--on-bad-file skip`, leaves the whole file out and records it in the manifest.
"""

from __future__ import annotations

from cptkit.errors import UserError

_ZSTD_MAGIC = 0xFD2FB528
_SKIPPABLE_MASK, _SKIPPABLE_MAGIC = 0xFFFFFFF0, 0x184D2A50
ARROW_EOS = (b"\xff\xff\xff\xff\x00\x00\x00\x00", b"\x00\x00\x00\x00")  # current and pre-0.15 Arrow end markers


class DamagedInput(UserError):
    """A truncated or corrupt input file. `kind` is "truncated" or "corrupt"."""

    def __init__(self, kind: str, message: str, *, file: str):
        self.kind = kind
        super().__init__(f"{kind} input: {message}", file=file)


class ZstdFrameChecker:
    """Feed it the raw bytes of a .zst file in order (`feed`); `finish()` raises unless the file ended between frames.

    A state machine over the frame layout: it reads headers byte by byte and jumps over block contents by counting,
    so it costs nothing next to decompression.
    """

    def __init__(self, path: str):
        self.path = path
        self.offset = 0  # raw bytes seen
        self._need = 4  # bytes wanted by the current state
        self._buf = bytearray()  # header bytes gathered so far
        self._skip = 0  # block or skippable-frame bytes to jump over
        self._state = "magic"
        self._checksum = False
        self.frames = 0

    def feed(self, data: bytes) -> None:
        i, n = 0, len(data)
        while i < n:
            if self._skip:  # block contents (or a skippable frame): jump over them
                step = min(self._skip, n - i)
                self._skip -= step
                i += step
                continue
            take = min(self._need - len(self._buf), n - i)
            self._buf += data[i : i + take]
            i += take
            if len(self._buf) == self._need:
                self._step(self.offset + i)
        self.offset += n

    def _step(self, at: int) -> None:
        buf, state = bytes(self._buf), self._state
        self._buf.clear()
        if state == "magic":
            magic = int.from_bytes(buf, "little")
            if magic == _ZSTD_MAGIC:
                self._state, self._need = "descriptor", 1
            elif magic & _SKIPPABLE_MASK == _SKIPPABLE_MAGIC:
                self._state, self._need = "skip_size", 4
            else:
                raise DamagedInput(
                    "corrupt", f"no zstd frame starts at byte {at - 4:,} (not zstd data, or damaged)", file=self.path
                )
        elif state == "skip_size":
            self._skip = int.from_bytes(buf, "little")
            self._state, self._need = "magic", 4
        elif state == "descriptor":
            d = buf[0]
            fcs_flag, single, self._checksum, did_flag = d >> 6, (d >> 5) & 1, bool(d & 4), d & 3
            if d & 8:
                raise DamagedInput("corrupt", f"bad zstd frame header at byte {at - 1:,}", file=self.path)
            fcs = (1 if single else 0, 2, 4, 8)[fcs_flag]
            rest = (0 if single else 1) + (0, 1, 2, 4)[did_flag] + fcs
            self._state, self._need = ("header_rest", rest) if rest else ("block", 3)
        elif state == "header_rest":
            self._state, self._need = "block", 3
        elif state == "block":
            header = int.from_bytes(buf, "little")
            last, kind, size = header & 1, (header >> 1) & 3, header >> 3
            if kind == 3:
                raise DamagedInput("corrupt", f"reserved zstd block type at byte {at - 3:,}", file=self.path)
            self._skip = 1 if kind == 1 else size  # an RLE block stores its one byte
            if not last:
                self._state, self._need = "block", 3
            else:
                self.frames += 1
                self._state, self._need = ("checksum", 4) if self._checksum else ("magic", 4)
        elif state == "checksum":
            self._state, self._need = "magic", 4

    def finish(self) -> None:
        between_frames = self._state == "magic" and not self._buf and not self._skip
        if not between_frames:
            raise DamagedInput(
                "truncated",
                f"the file ends inside a zstd frame (after {self.offset:,} bytes, {self.frames} whole frame(s)): "
                "it was cut short (an interrupted copy or download?)",
                file=self.path,
            )


def check_arrow_stream_end(path: str) -> None:
    """An Arrow IPC stream cut at a message boundary reads as a shorter, valid stream: require the end marker."""
    with open(path, "rb") as f:
        f.seek(0, 2)
        size = f.tell()
        f.seek(max(0, size - 8))
        tail = f.read()
    if not tail.endswith(ARROW_EOS):
        raise DamagedInput(
            "truncated", f"the Arrow stream has no end-of-stream marker ({size:,} bytes): it was cut short", file=path
        )
