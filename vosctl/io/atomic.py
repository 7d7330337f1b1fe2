"""Atomic outputs: write under a temporary name in the destination folder, rename on success.

Every vosctl writer goes through :class:`AtomicPath`. The temporary lives in the *same* folder as
the destination (``.<name>.tmp-<pid>``) so the final ``os.replace`` is a rename on one file system,
never a copy: readers see either the old output or the complete new one, never a half-written file.
A folder output (a PNG sequence) is written into a temporary folder and renamed as a whole. On
failure the temporary is removed, and so are parent folders this writer had to create, so a failed
run leaves nothing behind.
"""

from __future__ import annotations

import contextlib
import errno
import os
import re
import shutil
from collections.abc import Iterable, Iterator
from pathlib import Path
from types import TracebackType


def temp_path_for(dest: Path) -> Path:
    """The temporary name used while ``dest`` is written: hidden, beside it, unique per process."""
    return dest.parent / f".{dest.name}.tmp-{os.getpid()}"


def _remove(path: Path) -> None:
    """Remove a file, link or folder tree if it exists; never raises for a missing path."""
    if path.is_dir() and not path.is_symlink():
        shutil.rmtree(path, ignore_errors=True)
    else:
        with contextlib.suppress(FileNotFoundError):
            path.unlink()


def make_parents(folder: Path) -> list[Path]:
    """``mkdir -p folder``; returns the folders it created, deepest last (to undo on failure)."""
    missing: list[Path] = []
    current = folder
    while not current.exists():
        missing.append(current)
        if current.parent == current:
            break
        current = current.parent
    folder.mkdir(parents=True, exist_ok=True)
    return list(reversed(missing))


_make_parents = make_parents


def remove_created(folders: list[Path]) -> None:
    """Undo :func:`make_parents`: remove the folders it created, deepest first, if still empty."""
    for folder in reversed(folders):
        with contextlib.suppress(OSError):  # not empty: someone else wrote there
            folder.rmdir()


def replace_path(src: Path, dest: Path) -> None:
    """Move ``src`` onto ``dest``, replacing a file or a whole folder that is already there.

    ``os.replace`` cannot replace a non-empty folder, so an existing folder is first renamed
    aside, the new one renamed in, then the old one deleted: ``dest`` is never missing or partial
    for longer than one rename.
    """
    if dest.is_dir() and not dest.is_symlink():
        old = dest.parent / f".{dest.name}.old-{os.getpid()}"
        _remove(old)
        os.replace(dest, old)
        try:
            os.replace(src, dest)
        except BaseException:
            os.replace(old, dest)  # put the previous output back
            raise
        shutil.rmtree(old, ignore_errors=True)
    else:
        os.replace(src, dest)


class AtomicPath:
    """A destination file or folder written through a temporary name.

    ``tmp`` is where to write; :meth:`commit` renames it onto ``dest`` (replacing what is there),
    :meth:`abort` deletes it. With ``folder=True`` the temporary is created as an empty folder.
    As a context manager it commits on success and aborts on any exception (Ctrl-C included).
    """

    def __init__(self, dest: str | os.PathLike[str], folder: bool = False) -> None:
        self.dest = Path(dest)
        self.tmp = temp_path_for(self.dest)
        self.folder = folder
        self._created_parents = _make_parents(self.dest.parent)
        _remove(self.tmp)  # a stale temporary from a crashed run with the same pid
        if folder:
            self.tmp.mkdir()
        self.done = False

    def commit(self) -> Path:
        """Rename the temporary onto the destination; returns the destination."""
        if self.done:
            return self.dest
        replace_path(self.tmp, self.dest)
        self.done = True
        return self.dest

    def abort(self) -> None:
        """Delete the temporary (and parent folders this writer created, if still empty)."""
        if self.done:
            return
        self.done = True
        _remove(self.tmp)
        remove_created(self._created_parents)

    def __enter__(self) -> AtomicPath:
        return self

    def __exit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        if exc_type is None:
            self.commit()
        else:
            self.abort()


@contextlib.contextmanager
def atomic_write(dest: str | os.PathLike[str], folder: bool = False) -> Iterator[Path]:
    """``with atomic_write(dest) as tmp:`` write to ``tmp``; it becomes ``dest`` only on success."""
    target = AtomicPath(dest, folder=folder)
    with target:
        yield target.tmp


# ``.<name>.tmp-<pid>`` (a writer's temporary) and ``.<name>.old-<pid>`` (the previous output while
# replace_path swaps folders): the names this module gives, so that leftovers can be recognised.
_TEMP_NAME = re.compile(r"^\.(?P<name>.+)\.(?:tmp|old)-(?P<pid>\d+)$")


def pid_running(pid: int) -> bool:
    """True when a process with this id runs on this machine (ours, or another user's)."""
    if pid == os.getpid():
        return True
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:  # it exists, it is just not ours
        return True
    except OSError:
        return True  # cannot tell: never delete what may be in use
    return True


def stale_temporaries(folder: Path, names: Iterable[str]) -> list[Path]:
    """Temporaries for ``names`` in ``folder`` whose writing process no longer runs.

    A run killed with SIGKILL (or by a power cut) cannot clean up after itself; its
    ``.<name>.tmp-<pid>`` stays behind. A temporary whose process is still running (another
    vosctl writing the same output right now) is never listed. The check is by process id on
    this machine, so a folder shared over the network by runs on several machines should not be
    written by two of them at once.
    """
    wanted = set(names)
    found = []
    try:
        entries = list(os.scandir(folder))
    except OSError:  # missing or unreadable folder: nothing of ours there
        return []
    for entry in entries:
        match = _TEMP_NAME.match(entry.name)
        if match and match["name"] in wanted and not pid_running(int(match["pid"])):
            found.append(Path(entry.path))
    return sorted(found)


def remove_stale_temporaries(folder: Path, names: Iterable[str]) -> list[Path]:
    """Delete :func:`stale_temporaries`; returns what was removed."""
    stale = stale_temporaries(folder, names)
    for path in stale:
        _remove(path)
    return stale


def writable_problem(folder: Path) -> str | None:
    """Why outputs could not be created in ``folder`` (created if missing), or ``None``.

    Checked before any work so that a read-only destination is reported at once instead of
    after the model has loaded and the video has been decoded. The nearest existing ancestor
    must be a writable folder (``access(2)`` also reports read-only mounts, even for root).
    """
    current = folder
    while not current.exists():
        if current.parent == current:
            return "no existing parent folder"
        current = current.parent
    if not current.is_dir():
        return f"{current} is not a folder"
    if os.access(current, os.W_OK | os.X_OK):
        return None
    try:
        if os.statvfs(current).f_flag & os.ST_RDONLY:
            return f"{current} is on a read-only file system"
    except OSError:
        pass
    return f"{current} is not writable ({os.strerror(errno.EACCES).lower()})"
