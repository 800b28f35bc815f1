"""Prove that code under test writes nothing into a folder, even when running as root.

Two independent checks:

* :func:`record_writes` — a ``sys.addaudithook`` hook sees every attempt to open a path
  for writing, create, rename, delete, truncate, chmod or touch it, in any thread
  (AppTest runs the page in its own), *before* the OS decides; so an attempt counts even
  when it would fail or be caught. Root's ability to ignore permissions does not matter.
* :func:`read_only` — makes the folder really read-only: a read-only bind mount of it
  onto itself when we are root and may mount (chmod does not stop root), else chmod for
  a normal user (where it does). It reports which one it managed.
"""

from __future__ import annotations

import contextlib
import errno
import os
import stat
import subprocess
import sys
import threading
from collections.abc import Iterator
from pathlib import Path
from typing import Any

_WRITE_FLAGS = os.O_WRONLY | os.O_RDWR | os.O_CREAT | os.O_TRUNC | os.O_APPEND
_PATH_EVENTS = {
    "os.mkdir": (0,),
    "os.rename": (0, 1),  # also os.replace
    "os.remove": (0,),  # also os.unlink
    "os.rmdir": (0,),
    "os.link": (0, 1),
    "os.symlink": (0, 1),
    "os.truncate": (0,),
    "os.chmod": (0,),
    "os.chown": (0,),
    "os.utime": (0,),
    "os.mkfifo": (0,),
    "os.mknod": (0,),
    "shutil.rmtree": (0,),
    "shutil.move": (0, 1),
    "shutil.copyfile": (1,),
    "shutil.copytree": (1,),
}

_lock = threading.Lock()
_watched: list[tuple[str, list[str]]] = []
_installed = False


def _paths(event: str, args: tuple[Any, ...]) -> list[object]:
    if event == "open":
        path, mode, flags = [*args, None, None, None][:3]
        writing = (isinstance(flags, int) and flags & _WRITE_FLAGS) or (
            isinstance(mode, str) and any(ch in mode for ch in "wax+")
        )
        return [path] if writing else []
    positions = _PATH_EVENTS.get(event)
    if positions is None:
        return []
    return [args[i] for i in positions if i < len(args)]


def _hook(event: str, args: tuple[Any, ...]) -> None:
    if not _watched:
        return
    try:
        for raw in _paths(event, args):
            if not isinstance(raw, (str, bytes, os.PathLike)):
                continue  # a file descriptor: its open was already checked
            path = os.path.abspath(os.fsdecode(raw))
            hit: set[int] = set()
            for root, found in list(_watched):
                if id(found) not in hit and (path == root or path.startswith(root + os.sep)):
                    hit.add(id(found))
                    found.append(f"{event} {path}")
    except Exception:  # an audit hook must never break the code it watches
        pass


@contextlib.contextmanager
def record_writes(root: Path) -> Iterator[list[str]]:
    """Collect every write attempt under ``root`` (as "event path") while inside."""
    global _installed
    with _lock:
        if not _installed:
            sys.addaudithook(_hook)
            _installed = True
    found: list[str] = []
    entries = [(path, found) for path in {os.path.abspath(root), os.path.realpath(root)}]
    _watched.extend(entries)
    try:
        yield found
    finally:
        for entry in entries:
            _watched.remove(entry)


@contextlib.contextmanager
def read_only(root: Path) -> Iterator[str]:
    """Make ``root`` read-only for real while inside; yields how ("bind mount", "chmod")
    or "not enforced" when neither works (root without mount rights)."""
    if os.geteuid() == 0:
        if _mount(["--bind", str(root), str(root)]):
            try:
                if _mount(["-o", "remount,bind,ro", str(root), str(root)]) and _refuses_writes(
                    root
                ):
                    yield "read-only bind mount"
                    return
                yield "not enforced"
            finally:
                subprocess.run(["umount", str(root)], check=False, capture_output=True)
            return
        yield "not enforced"
        return
    modes = _chmod_read_only(root)
    try:
        yield "chmod a-w" if _refuses_writes(root) else "not enforced"
    finally:
        for path, mode in reversed(modes):
            os.chmod(path, mode)


def _mount(args: list[str]) -> bool:
    try:
        done = subprocess.run(["mount", *args], check=False, capture_output=True, timeout=20)
    except (OSError, subprocess.TimeoutExpired):
        return False
    return done.returncode == 0


def _refuses_writes(root: Path) -> bool:
    probe = root / ".write-probe"
    try:
        probe.write_bytes(b"x")
    except OSError as exc:
        return exc.errno in (errno.EROFS, errno.EACCES, errno.EPERM)
    probe.unlink()
    return False


def _chmod_read_only(root: Path) -> list[tuple[Path, int]]:
    modes: list[tuple[Path, int]] = []
    for dirpath, dirnames, filenames in os.walk(root, topdown=False):
        for name in filenames + dirnames:
            path = Path(dirpath) / name
            mode = stat.S_IMODE(path.lstat().st_mode)
            modes.append((path, mode))
            path.chmod(mode & ~0o222)
    mode = stat.S_IMODE(root.stat().st_mode)
    modes.append((root, mode))
    root.chmod(mode & ~0o222)
    return modes
