"""No endless downloads: a watchdog that stops a download that stalls or crawls.

A :class:`DownloadWatch` is fed by yt-dlp's progress hooks (:meth:`DownloadWatch.hook`)
and checked by its own thread once a second. It stops the download when

* no new bytes have come for ``stall_seconds`` ("the download stalled for 60 s"), or
* once the first ``stall_seconds`` have passed, fewer than ``min_rate`` bytes per second
  have come on average since then: a file of S bytes gets at most
  ``stall_seconds + S / min_rate`` seconds, and a trickle is stopped as soon as it falls
  behind that pace, whatever size the server claims.

Stopping means: the next progress report raises the reason (a
:class:`~flows.errors.TransientError`, so the item is retried), and every socket the
download's thread has connected is shut down. The second part is what ends a read that
blocks: yt-dlp reads in blocks (1 kB at first), and a server that sends one byte every
few seconds keeps such a read, and its socket timeout, waiting for many minutes with no
progress report at all. The sockets are collected by a Python audit hook on
``socket.__new__`` (installed once, acting only in a thread inside a watch), which also
sees the ``SSLSocket`` that takes over a plain socket's connection for HTTPS.
"""

from __future__ import annotations

import contextvars
import socket
import sys
import threading
import time
import weakref
from collections.abc import Callable
from contextlib import suppress
from types import TracebackType
from typing import Any, Final

from flows.errors import TransientError
from flows.settings import Settings

_ACTIVE: Final = contextvars.ContextVar["DownloadWatch | None"]("ytmp3_watch", default=None)
_installed = False
_install_lock = threading.Lock()


class DownloadWatch:
    """Stops one download (one yt-dlp call, in one thread) that stalls or crawls.

    Use as a context manager around the yt-dlp call, with :meth:`hook` among its
    ``progress_hooks``; after a stop, :attr:`error` says why.
    """

    def __init__(
        self,
        stall_seconds: float,
        min_rate: float,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.stall_seconds = stall_seconds
        self.min_rate = min_rate
        """Bytes per second; 0 for no minimum."""
        self.error: TransientError | None = None
        self._clock = clock
        self._lock = threading.Lock()
        self._files: dict[str, int] = {}
        self._since = self._last = clock()
        self._base = 0  # bytes before the current stretch of downloading
        self._paused = False
        self._sockets: weakref.WeakSet[socket.socket] = weakref.WeakSet()
        self._done = threading.Event()
        self._thread: threading.Thread | None = None
        self._token: contextvars.Token[DownloadWatch | None] | None = None

    @classmethod
    def from_settings(cls, settings: Settings) -> DownloadWatch:
        return cls(settings.stall_timeout_seconds, settings.min_download_kb_per_second * 1000)

    # -- fed by yt-dlp -------------------------------------------------------------------

    def hook(self, status: dict[str, Any]) -> None:
        """A yt-dlp progress hook: counts the bytes, raises :attr:`error` once stopped.

        A finished file pauses the watch (yt-dlp's postprocessors run next, with no
        bytes to count); the next file's first report starts a new stretch.
        """
        if self.error is not None:
            raise self.error
        with self._lock:
            now = self._clock()
            name = str(status.get("tmpfilename") or status.get("filename") or "")
            if status.get("status") == "finished":
                self._paused = True
                return
            if status.get("status") != "downloading":
                return
            if self._paused:
                self._paused = False
                self._since = self._last = now
                self._base = self.downloaded
            done = int(status.get("downloaded_bytes") or 0)
            if done > self._files.get(name, 0):
                self._files[name] = done
                self._last = now

    @property
    def downloaded(self) -> int:
        """Bytes reported so far, over every file of the download."""
        return sum(self._files.values())

    def check(self) -> TransientError | None:
        """Why the download must stop now, or None."""
        with self._lock:
            if self._paused:
                return None
            now = self._clock()
            if now - self._last >= self.stall_seconds:
                return TransientError(
                    f"the download stalled for {self.stall_seconds:.0f} s", "try again later"
                )
            elapsed = now - self._since
            got = self.downloaded - self._base
            if self.min_rate and got < self.min_rate * (elapsed - self.stall_seconds):
                return TransientError(
                    f"the download was too slow ({got / elapsed / 1000:.1f} kB/s; "
                    f"at least {self.min_rate / 1000:g} kB/s is needed)",
                    "try again later; a site this slow needs a lower "
                    "YTMP3_MIN_DOWNLOAD_KB_PER_SECOND",
                )
            return None

    # -- the watchdog ----------------------------------------------------------------------

    def __enter__(self) -> DownloadWatch:
        _install_audit_hook()
        self._token = _ACTIVE.set(self)
        with self._lock:
            self._since = self._last = self._clock()
        self._thread = threading.Thread(target=self._run, name="ytmp3-download-watch", daemon=True)
        self._thread.start()
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self._done.set()
        if self._thread is not None:
            self._thread.join()
        if self._token is not None:
            _ACTIVE.reset(self._token)

    def _run(self) -> None:
        interval = min(1.0, self.stall_seconds / 4)
        while not self._done.wait(interval):
            if self.error is None:
                self.error = self.check()
            if self.error is not None:
                self._interrupt()  # again each time: a retry may have connected anew

    def _interrupt(self) -> None:
        for sock in list(self._sockets):
            with suppress(OSError):
                sock.shutdown(socket.SHUT_RDWR)

    def _created(self, sock: socket.socket) -> None:
        self._sockets.add(sock)


def _install_audit_hook() -> None:
    """Once per process: register each socket a watched thread creates with its watch."""
    global _installed
    with _install_lock:
        if _installed:
            return

        def on_event(event: str, args: tuple[Any, ...]) -> None:
            if event == "socket.__new__":
                watch = _ACTIVE.get()
                if watch is not None and isinstance(args[0], socket.socket):
                    watch._created(args[0])

        sys.addaudithook(on_event)
        _installed = True
