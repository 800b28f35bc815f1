"""The download watchdog: when it stops a download, and that it ends a read that blocks."""

from __future__ import annotations

import socket
import threading
from collections.abc import Iterator

import pytest

from flows.errors import TransientError
from flows.watch import DownloadWatch


class Clock:
    def __init__(self) -> None:
        self.now = 0.0

    def __call__(self) -> float:
        return self.now


def downloading(done: int, name: str = "source.m4a.part") -> dict[str, object]:
    return {"status": "downloading", "downloaded_bytes": done, "tmpfilename": name}


def test_no_new_bytes_for_the_stall_timeout_is_a_stall():
    clock = Clock()
    watch = DownloadWatch(stall_seconds=60, min_rate=0, clock=clock)
    watch.hook(downloading(1000))
    clock.now = 59.9
    assert watch.check() is None
    watch.hook(downloading(1000))  # a report without new bytes is no progress
    clock.now = 60.0
    error = watch.check()
    assert isinstance(error, TransientError)
    assert str(error) == "the download stalled for 60 s"


def test_a_trickle_is_stopped_once_it_falls_behind_the_minimum_rate():
    clock = Clock()
    watch = DownloadWatch(stall_seconds=10, min_rate=1000, clock=clock)
    for second in range(1, 21):  # 250 bytes per second, a byte count that never stalls
        clock.now = second
        watch.hook(downloading(250 * second))
        if second <= 13:  # 3,250 bytes by 13 s: ahead of 1,000 * (13 - 10)
            assert watch.check() is None, second
    error = watch.check()
    assert str(error) == "the download was too slow (0.2 kB/s; at least 1 kB/s is needed)"


def test_without_a_minimum_rate_only_a_stall_stops_it():
    clock = Clock()
    watch = DownloadWatch(stall_seconds=10, min_rate=0, clock=clock)
    for second in range(1, 1000):
        clock.now = second
        watch.hook(downloading(second))
    assert watch.check() is None


def test_every_file_counts_and_a_finished_one_pauses_the_watch():
    """A format merge downloads two files: the second one's bytes start again at zero."""
    clock = Clock()
    watch = DownloadWatch(stall_seconds=10, min_rate=100, clock=clock)
    clock.now = 5
    watch.hook(downloading(5000, "video.part"))
    watch.hook({"status": "finished", "filename": "video.mp4"})
    clock.now = 500  # yt-dlp's postprocessors, say: no bytes, and no stall either
    assert watch.check() is None
    watch.hook(downloading(10, "audio.part"))
    assert watch.downloaded == 5010
    clock.now = 509
    assert watch.check() is None
    clock.now = 514
    watch.hook(downloading(20, "audio.part"))
    clock.now = 515  # a new stretch: 20 bytes in 15 s, short of 100 * (15 - 10)
    assert "too slow" in str(watch.check())


def test_once_stopped_the_next_progress_report_raises_the_reason():
    watch = DownloadWatch(stall_seconds=1, min_rate=0, clock=Clock())
    watch.error = TransientError("the download stalled for 1 s")
    with pytest.raises(TransientError, match="stalled"):
        watch.hook(downloading(1))


# -- a real blocking read -----------------------------------------------------------------


@pytest.fixture
def dripping_server() -> Iterator[tuple[str, int]]:
    """A TCP server on 127.0.0.1 that sends one byte every 0.3 s to each client, forever."""
    listener = socket.create_server(("127.0.0.1", 0))
    stop = threading.Event()

    def drip(conn: socket.socket) -> None:
        with conn:
            while not stop.wait(0.3):
                try:
                    conn.sendall(b"x")
                except OSError:
                    return

    def accept() -> None:
        while not stop.is_set():
            try:
                conn, _ = listener.accept()
            except OSError:
                return
            threading.Thread(target=drip, args=(conn,), daemon=True).start()

    threading.Thread(target=accept, daemon=True).start()
    try:
        yield listener.getsockname()
    finally:
        stop.set()
        listener.close()


def blocking_read(address: tuple[str, int], result: list[bytes]) -> None:
    """Read 4 kB the way a buffered HTTP body read does: it returns only when all came."""
    with socket.create_connection(address, timeout=5) as sock, sock.makefile("rb") as body:
        try:
            result.append(body.read(4096))
        except OSError:
            result.append(b"")


def test_the_watchdog_ends_a_read_that_a_trickle_keeps_blocked(dripping_server):
    """Bytes keep coming (so no socket timeout fires) but far too few for a progress report:
    the watch shuts the socket its thread opened, and leaves other threads' sockets alone."""
    outside: list[bytes] = []
    bystander = threading.Thread(target=blocking_read, args=(dripping_server, outside), daemon=True)
    watched: list[bytes] = []
    watch = DownloadWatch(stall_seconds=1, min_rate=0)

    def download() -> None:
        with watch:
            blocking_read(dripping_server, watched)

    bystander.start()
    thread = threading.Thread(target=download, daemon=True)
    thread.start()
    thread.join(30)
    assert not thread.is_alive(), "the read was never interrupted"
    assert str(watch.error) == "the download stalled for 1 s"
    assert len(watched[0]) < 4096
    assert bystander.is_alive(), "a socket outside the watch was shut too"
