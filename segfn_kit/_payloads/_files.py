"""Files, folders and globs: which files an argument names, and reading them within a size cap.

The cap (``max_bytes``, default 256 MiB, or ``$SEGFN_MAX_BYTES``) bounds what is held in memory
at once: a ``.json`` or ``.har`` file's content after decompression, or one line of a JSON Lines
file (which is otherwise streamed whatever its length). Input over the cap is one error row
naming the cap and how to raise it.
"""

from __future__ import annotations

import glob
import gzip
import os
from collections.abc import Iterator
from pathlib import Path
from typing import TYPE_CHECKING, BinaryIO, cast

if TYPE_CHECKING:
    from ._formats import _Reader

# file extensions read when walking a folder; any other file there is reported as skipped
PAYLOAD_SUFFIXES = (".json", ".jsonl", ".ndjson", ".har")
JSONL_SUFFIXES = (".jsonl", ".ndjson")


def _is_glob(text: str) -> bool:
    return glob.has_magic(text)


def _files_of(arg: str | os.PathLike[str], reader: _Reader) -> Iterator[tuple[Path, str]]:
    """Each (file, base id) an argument names, in a stable order."""
    text = os.fspath(arg)
    if _is_glob(text):
        # ids are relative to the folder before the first wildcard, so they stay unique
        parts = Path(text).parts
        fixed = [p for p in _take_fixed(parts)]
        root = Path(*fixed) if fixed else Path(".")
        matches = sorted(glob.glob(text, recursive=True))
        if not matches:
            reader.skip(text, "the pattern matches no file")
        for match in matches:
            path = Path(match)
            if path.is_dir():
                yield from _walk(
                    path, f"{root.name or '.'}/{path.relative_to(root).as_posix()}", reader
                )
            elif path.is_file():
                rel = path.relative_to(root).as_posix() if path.is_relative_to(root) else path.name
                yield path, f"{root.resolve().name}/{rel}"
        return
    path = Path(text)
    if path.is_dir():
        yield from _walk(path, path.resolve().name, reader)
    elif path.is_file() or path.exists():
        yield path, path.name
    else:
        raise FileNotFoundError(
            f"no such file or folder: {text!r}; check the path (globs like 'captures/*.json' work too)"
        )


def _take_fixed(parts: tuple[str, ...]) -> Iterator[str]:
    for part in parts:
        if glob.has_magic(part):
            return
        yield part


def _walk(folder: Path, base: str, reader: _Reader) -> Iterator[tuple[Path, str]]:
    for dirpath, dirnames, filenames in os.walk(folder):
        dirnames[:] = sorted(d for d in dirnames if not d.startswith("."))
        for name in sorted(filenames):
            path = Path(dirpath) / name
            rel = path.relative_to(folder).as_posix()
            lowered = name.lower().removesuffix(".gz")
            if name.startswith("."):
                reader.skip(str(path), "a hidden file")
            elif not lowered.endswith(PAYLOAD_SUFFIXES):
                suffix = Path(lowered).suffix or "no extension"
                reader.skip(
                    str(path),
                    f"not a payload file ({suffix}); payload files end in "
                    + ", ".join(PAYLOAD_SUFFIXES),
                )
            else:
                yield path, f"{base}/{rel}"


# --------------------------------------------------------------------------- size cap

DEFAULT_MAX_BYTES = 256 * 1024 * 1024
MAX_BYTES_ENV = "SEGFN_MAX_BYTES"
_UNITS = {"": 1, "k": 1 << 10, "m": 1 << 20, "g": 1 << 30}
_CHUNK_BYTES = 1 << 20


def parse_size(text: str) -> int:
    """A size in bytes from ``"1048576"``, ``"512K"``, ``"256M"``, ``"1G"`` (powers of 1,024).

    Raises:
        ValueError: the text is not a size.

    Example:
        >>> parse_size("256M"), parse_size("1g"), parse_size("4096")
        (268435456, 1073741824, 4096)
    """
    cleaned = text.strip().lower().removesuffix("ib").removesuffix("b")
    unit = cleaned[-1:] if cleaned[-1:] in ("k", "m", "g") else ""
    number = cleaned[: len(cleaned) - len(unit)].strip()
    try:
        value = float(number)
    except ValueError:
        raise ValueError(f"{text!r} is not a size; write bytes or e.g. 512M, 1G") from None
    if not value > 0 or value != value or value == float("inf"):
        raise ValueError(f"{text!r} is not a size above zero; write bytes or e.g. 512M, 1G")
    return int(value * _UNITS[unit])


def max_bytes_default() -> int:
    """The size cap in force: ``$SEGFN_MAX_BYTES`` when set, else 256 MiB.

    Raises:
        ValueError: ``SEGFN_MAX_BYTES`` is set but is not a size.

    Example:
        >>> max_bytes_default() >= 1
        True
    """
    text = os.environ.get(MAX_BYTES_ENV, "").strip()
    if not text:
        return DEFAULT_MAX_BYTES
    try:
        return parse_size(text)
    except ValueError as exc:
        raise ValueError(f"{MAX_BYTES_ENV}: {exc}") from None


def size_text(n: int) -> str:
    """A byte count for people: ``256 MiB``, ``1.5 GiB``, ``300 bytes``.

    Example:
        >>> size_text(256 * 1024 * 1024), size_text(1536 * 1024 * 1024), size_text(300)
        ('256 MiB', '1.5 GiB', '300 bytes')
    """
    for unit, size in (("GiB", 1 << 30), ("MiB", 1 << 20), ("KiB", 1 << 10)):
        if n >= size:
            return f"{n / size:.1f}".removesuffix(".0") + f" {unit}"
    return f"{n} bytes"


class TooLarge(Exception):
    """A file (or one line of a JSON Lines file) is over the size cap."""


def cap_message(what: str, limit: int, compressed: bool) -> str:
    """The error text for input over the cap, naming the cap and how to raise it."""
    state = "decompressed, " if compressed else ""
    return (
        f"{state}{what} is over the {size_text(limit)} size cap, so it was not read; "
        f"raise the cap with max_bytes= (load_payloads, iter_payloads) or the "
        f"{MAX_BYTES_ENV} environment variable (e.g. {MAX_BYTES_ENV}=1G)"
    )


def open_binary(path: Path, gz: bool) -> BinaryIO:
    """The file opened for reading bytes; ``.gz`` files decompressed as they are read."""
    if gz:
        return cast(BinaryIO, gzip.open(path, "rb"))
    return open(path, "rb")


def read_capped(path: Path, gz: bool, limit: int) -> bytes:
    """The file's bytes (decompressed for ``.gz``), reading at most ``limit`` + 1 of them.

    Decompression streams in 1 MiB chunks, so a small archive that expands to gigabytes
    costs at most the cap in memory before it is refused.

    Raises:
        TooLarge: the (decompressed) content is over ``limit`` bytes.
        OSError, EOFError, zlib.error: the file cannot be read or decompressed.
    """
    if not gz and path.stat().st_size > limit:
        raise TooLarge(cap_message("the file", limit, False))
    if gz and _gzip_trailer_size(path) > limit:
        # the trailer says too large (or is garbage, in a corrupt file): count the bytes
        # without keeping them, so a bomb costs no memory before it is refused
        _count_to(path, limit)
    chunks: list[bytes] = []
    total = 0
    with open_binary(path, gz) as fh:
        while True:
            chunk = fh.read(min(_CHUNK_BYTES, limit + 1 - total))
            if not chunk:
                break
            total += len(chunk)
            if total > limit:
                raise TooLarge(cap_message("the file", limit, gz))
            chunks.append(chunk)
    return chunks[0] if len(chunks) == 1 else b"".join(chunks)


def _count_to(path: Path, limit: int) -> None:
    """Decompress without keeping anything; raise ``TooLarge`` past ``limit`` bytes."""
    total = 0
    with open_binary(path, True) as fh:
        while chunk := fh.read(_CHUNK_BYTES):
            total += len(chunk)
            if total > limit:
                raise TooLarge(cap_message("the file", limit, True))


def _gzip_trailer_size(path: Path) -> int:
    """The size a gzip file's last member says it expands to (0 when it cannot tell).

    The trailer holds the size modulo 2^32, so it can understate (the streaming cap still
    applies); in a corrupt or truncated file it is garbage, so it is only a hint.
    """
    try:
        with open(path, "rb") as fh:
            if fh.read(2) != b"\x1f\x8b":
                return 0
            fh.seek(-4, os.SEEK_END)
            return int.from_bytes(fh.read(4), "little")
    except OSError:
        return 0


def capped_lines(fh: BinaryIO, limit: int) -> Iterator[bytes | None]:
    """The lines of a binary file; a line over ``limit`` bytes is None (and skipped unread).

    Lines are read in chunks of at most 1 MiB: a line over the cap is dropped as soon as it
    passes it, so it never costs more than the cap in memory.

    Example:
        >>> import io
        >>> list(capped_lines(io.BytesIO(b"ab\\n" + b"x" * 10 + b"\\ncd"), 5))
        [b'ab\\n', None, b'cd']
    """
    step = min(_CHUNK_BYTES, limit + 1)
    while True:
        part = fh.readline(step)
        if not part:
            return
        parts = [part]
        size = len(part)
        over = False
        while not part.endswith(b"\n") and len(part) == step:  # the line goes on
            if size > limit:
                over = True
                break
            part = fh.readline(step)
            if not part:
                break
            parts.append(part)
            size += len(part)
        if not over:
            over = size - parts[-1].endswith(b"\n") > limit
        if over:
            parts.clear()
            while part and not part.endswith(b"\n"):  # skip the rest of the long line
                part = fh.readline(_CHUNK_BYTES)
            yield None
            continue
        yield parts[0] if len(parts) == 1 else b"".join(parts)
