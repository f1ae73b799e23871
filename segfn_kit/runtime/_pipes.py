"""Messages over OS pipes: what a worker process and its caller say to each other.

Each message is framed as :mod:`multiprocessing.connection` frames it (a 4-byte big-endian
length, or ``-1`` and an 8-byte length past 2 GiB, then the bytes), so a frame written by
hand (``_isolation._send_frame``) reads the same. The module is not used itself because of
what importing it costs: it loads ``multiprocessing`` and ``tempfile`` (with ``shutil`` and
``random``), about 6 ms under ``python -X importtime`` even with ``subprocess``, ``pickle`` and
``socket`` loaded already, of a cold start that has 100 ms in all, for the few lines used here.

Example:
    >>> import os
    >>> r, w = os.pipe()
    >>> reader, writer = Pipe(r), Pipe(w)
    >>> writer.send(("run", [1, 2]))
    >>> reader.poll(1.0), reader.recv()
    (True, ('run', [1, 2]))
    >>> writer.close(); reader.poll(0), reader.closed
    (True, False)
    >>> reader.recv_bytes()
    Traceback (most recent call last):
    ...
    EOFError
    >>> reader.close()
"""

from __future__ import annotations

import os
import pickle
import select
import struct
import time
from collections.abc import Iterable
from typing import Any, TypeVar

__all__ = ["Pipe", "wait"]

_PROTOCOL = pickle.HIGHEST_PROTOCOL
_SMALL = 16 * 1024  # a frame up to this size goes in one write, its length header with it
_PIECE = 1 << 20  # the most one read asks for (a pipe made 1 MiB holds as much)
_T = TypeVar("_T", bound="Pipe")


class Pipe:
    """One end of an OS pipe, carrying whole messages (bytes, or pickled values).

    Reads and writes block; :func:`wait` (or :meth:`poll`) says when one would not. The end
    of the file (the other end closed) is ``EOFError`` on reading, ``BrokenPipeError`` on
    writing.
    """

    __slots__ = ("_fd",)

    def __init__(self, fd: int) -> None:
        self._fd: int | None = fd

    @property
    def closed(self) -> bool:
        return self._fd is None

    def fileno(self) -> int:
        if self._fd is None:
            raise OSError("the pipe is closed")
        return self._fd

    def close(self) -> None:
        fd, self._fd = self._fd, None
        if fd is not None:
            os.close(fd)

    def __del__(self) -> None:
        if self._fd is not None:
            try:
                self.close()
            except OSError:
                pass

    # -- writing ---------------------------------------------------------------------------
    def send_bytes(self, data: bytes) -> None:
        """Write ``data`` as one message."""
        size = len(data)
        header = struct.pack("!i", size) if size <= 0x7FFFFFFF else struct.pack("!iQ", -1, size)
        if size <= _SMALL:
            self._write(header + data)
        else:  # no copy of a large message to put its header in front
            self._write(header)
            self._write(data)

    def send(self, value: Any) -> None:
        """Write ``value``, pickled, as one message."""
        self.send_bytes(pickle.dumps(value, _PROTOCOL))

    def _write(self, data: bytes) -> None:
        fd = self.fileno()
        view = memoryview(data)
        while view:
            view = view[os.write(fd, view) :]

    # -- reading ---------------------------------------------------------------------------
    def recv_bytes(self) -> bytes:
        """Read one message; ``EOFError`` when the other end closed before one began."""
        (size,) = struct.unpack("!i", self._read(4))
        if size == -1:
            (size,) = struct.unpack("!Q", self._read(8))
        return self._read(size)

    def recv(self) -> Any:
        """Read one message and unpickle it."""
        return pickle.loads(self.recv_bytes())

    def poll(self, timeout: float | None = 0.0) -> bool:
        """Whether a message (or the end of the file) can be read within ``timeout``
        seconds (``None``: wait for one)."""
        return bool(wait([self], timeout))

    def _read(self, size: int) -> bytes:
        fd = self.fileno()
        # at most _PIECE a read: what a length header claims is allocated only as it arrives
        data = os.read(fd, min(size, _PIECE))
        if len(data) == size:
            return data
        if not data:
            raise EOFError
        parts = [data]
        left = size - len(data)
        while left:
            chunk = os.read(fd, min(left, _PIECE))
            if not chunk:  # the writer went away half-way through a message
                raise EOFError
            parts.append(chunk)
            left -= len(chunk)
        return b"".join(parts)


def wait(pipes: Iterable[_T], timeout: float | None = None) -> list[_T]:
    """The pipes of ``pipes`` that can be read now or within ``timeout`` seconds (``None``:
    wait for one), as :func:`multiprocessing.connection.wait` gives them. A pipe whose other
    end closed counts as readable (reading it says ``EOFError``).

    Example:
        >>> import os
        >>> r, w = os.pipe()
        >>> a = Pipe(r)
        >>> wait([a], 0)
        []
        >>> Pipe(w).send_bytes(b"x")
        >>> wait([a], 0) == [a]
        True
    """
    pipes = list(pipes)
    poller = select.poll()
    by_fd: dict[int, list[_T]] = {}
    for pipe in pipes:
        fd = pipe.fileno()
        if fd not in by_fd:
            poller.register(fd, select.POLLIN)
        by_fd.setdefault(fd, []).append(pipe)
    deadline = None if timeout is None else time.monotonic() + max(0.0, timeout)
    while True:
        left = None if deadline is None else max(0.0, deadline - time.monotonic())
        ready = poller.poll(None if left is None else left * 1000.0)
        if ready or (deadline is not None and time.monotonic() >= deadline):
            break
    found = {fd for fd, _ in ready}
    return [pipe for pipe in pipes if pipe.fileno() in found]
