"""``runtime._pipes``: whole messages over OS pipes, framed as ``multiprocessing.connection``
frames them, between this process and a real child."""

from __future__ import annotations

import os
import struct
import subprocess
import sys
import threading
import time
from multiprocessing.connection import Connection

import pytest

from segfn_kit.runtime._pipes import Pipe, wait

ECHO = """
import sys
from segfn_kit.runtime._pipes import Pipe
inbox, outbox = Pipe(int(sys.argv[1])), Pipe(int(sys.argv[2]))
while True:
    try:
        message = inbox.recv_bytes()
    except EOFError:
        break
    outbox.send_bytes(message[::-1])
"""


@pytest.fixture()
def echo() -> tuple[Pipe, Pipe]:
    """A child process that answers each message with its bytes reversed."""
    to_child_r, to_child_w = os.pipe()
    from_child_r, from_child_w = os.pipe()
    child = subprocess.Popen(
        [sys.executable, "-c", ECHO, str(to_child_r), str(from_child_w)],
        pass_fds=(to_child_r, from_child_w),
    )
    os.close(to_child_r)
    os.close(from_child_w)
    writer, reader = Pipe(to_child_w), Pipe(from_child_r)
    yield writer, reader
    writer.close()
    child.wait(timeout=30)
    reader.close()


@pytest.mark.parametrize("size", [0, 1, 16 * 1024, 16 * 1024 + 1, 3 << 20])
def test_messages_of_every_size_cross_whole(echo: tuple[Pipe, Pipe], size: int) -> None:
    writer, reader = echo
    message = os.urandom(size)
    # a writer thread: a message larger than the pipe only goes in while the child reads
    sender = threading.Thread(target=writer.send_bytes, args=(message,))
    sender.start()
    assert reader.poll(30)
    assert reader.recv_bytes() == message[::-1]
    sender.join(30)


def test_values_are_pickled_and_the_frames_are_multiprocessing_s() -> None:
    r, w = os.pipe()
    Pipe(w).send(("run", [1, {"a": 2.5}]))
    assert Connection(r, writable=False).recv() == ("run", [1, {"a": 2.5}])  # closes r
    r, w = os.pipe()
    Connection(w, readable=False).send_bytes(b"from multiprocessing")
    assert Pipe(r).recv_bytes() == b"from multiprocessing"


def test_the_other_end_closing_is_eof_before_or_inside_a_message() -> None:
    r, w = os.pipe()
    reader = Pipe(r)
    os.close(w)
    assert reader.poll(0)  # the end of the file counts as readable
    with pytest.raises(EOFError):
        reader.recv_bytes()
    r, w = os.pipe()
    os.write(w, struct.pack("!i", 100) + b"only part of it")
    os.close(w)
    with pytest.raises(EOFError):
        Pipe(r).recv_bytes()


def test_a_claimed_length_is_read_as_it_arrives_not_allocated_up_front() -> None:
    r, w = os.pipe()
    reader = Pipe(r)
    os.write(w, struct.pack("!iQ", -1, 1 << 40))  # a terabyte claimed, a few bytes sent
    os.write(w, b"xyz")
    os.close(w)
    with pytest.raises(EOFError):
        reader.recv_bytes()


def test_wait_gives_the_readable_pipes_within_the_timeout() -> None:
    (r1, w1), (r2, w2) = os.pipe(), os.pipe()
    a, b = Pipe(r1), Pipe(r2)
    start = time.monotonic()
    assert wait([a, b], 0.05) == []
    assert time.monotonic() - start >= 0.04
    Pipe(w2).send_bytes(b"x")
    assert wait([a, b], 5) == [b]
    Pipe(w1).send_bytes(b"y")
    assert wait([a, b], None) == [a, b]


def test_a_closed_pipe_says_so() -> None:
    r, w = os.pipe()
    pipe = Pipe(r)
    pipe.close()
    pipe.close()  # twice is fine
    assert pipe.closed
    with pytest.raises(OSError, match="closed"):
        pipe.fileno()
    os.close(w)


def test_writing_to_a_pipe_nobody_reads_is_broken_pipe() -> None:
    r, w = os.pipe()
    os.close(r)
    with pytest.raises(BrokenPipeError):
        Pipe(w).send_bytes(b"x")
