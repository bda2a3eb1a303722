"""Write a file so that it is either the old one or the whole new one, never half of either.

The new content goes to a temporary file in the target's folder, named
``.<target name>.<host>.<pid>.<random>.tmp`` (``<host>``: 8 hex digits of a hash of the host name), which
is flushed, fsync'ed and renamed over the target. A process killed while writing (SIGKILL, power loss)
leaves its temporary file behind; the next write of the same target removes such leftovers
(:func:`remove_stale_temporaries`) by a lock-free rule:

* a temporary file of this host whose writer process no longer exists is stale (a process that exists
  may be writing it, so it is kept, even if its pid was reused: keeping is the safe side);
* any temporary file of ours for this target (another host's, one whose pid now belongs to a live
  process, or one named before the pid was part of the name) is stale when it has not been modified for
  :data:`STALE_AFTER_S` seconds: a writer writes its whole file and renames it within one call, so a file
  untouched that long has no writer left.

Only names of exactly this pattern for exactly this target are touched, and a failure to remove one never
fails the write.
"""

from __future__ import annotations

import contextlib
import os
import re
import socket
import tempfile
import time
import zlib
from pathlib import Path
from typing import BinaryIO, Callable

STALE_AFTER_S = 24 * 3600.0  # a day: far longer than any one save of a file (seconds for 24 MB)

# tempfile's random part: 8 characters of [a-z0-9_] (tempfile._RandomNameSequence).
_RANDOM = r"[a-z0-9_]{8}"


def _host_tag() -> str:
    return f"{zlib.crc32(socket.gethostname().encode('utf-8', 'replace')):08x}"


def _umask() -> int:
    mask = os.umask(0)
    os.umask(mask)
    return mask


def _pid_exists(pid: int) -> bool:
    """Whether a process ``pid`` exists on this host (POSIX signal 0: checks, sends nothing)."""
    if pid <= 0:
        return True  # not a writer's pid: do not judge it by pid
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True  # exists, owned by someone else
    except OSError:
        return True
    return True


def remove_stale_temporaries(path, *, now: float | None = None) -> list[Path]:
    """Remove the temporary files that earlier, killed writes of ``path`` left (see the module docstring);
    returns those removed. Never raises for a file it cannot inspect or remove."""
    path = Path(path)
    pattern = re.compile(rf"\.{re.escape(path.name)}\.(?:([0-9a-f]{{8}})\.([0-9]+)\.)?{_RANDOM}\.tmp")
    host = _host_tag()
    now = time.time() if now is None else now
    removed = []
    try:
        entries = list(os.scandir(path.parent if str(path.parent) else "."))
    except OSError:
        return removed
    for entry in entries:
        match = pattern.fullmatch(entry.name)
        if match is None:
            continue
        try:
            if not entry.is_file(follow_symlinks=False):
                continue
            tag, pid = match.group(1), match.group(2)
            writer_gone = (tag == host and pid is not None and os.name == "posix"  # os.kill(pid, 0) kills on Windows
                           and int(pid) != os.getpid() and not _pid_exists(int(pid)))
            if writer_gone or now - entry.stat(follow_symlinks=False).st_mtime > STALE_AFTER_S:
                os.unlink(entry.path)
                removed.append(Path(entry.path))
        except (OSError, ValueError):
            continue
    return removed


def atomic_write(path, write: Callable[[BinaryIO], object]) -> Path:
    """Call ``write(binary_file)`` on a temporary file in ``path``'s folder, flush, fsync, rename over ``path``.

    Leftover temporary files of earlier writes of ``path`` whose writers were killed are removed first.
    """
    path = Path(path)
    remove_stale_temporaries(path)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.{_host_tag()}.{os.getpid()}.", suffix=".tmp", dir=path.parent)
    try:
        with os.fdopen(fd, "wb") as f:
            write(f)
            f.flush()
            os.fsync(f.fileno())
        os.chmod(tmp, 0o666 & ~_umask())  # mkstemp makes it private; these are ordinary files
        os.replace(tmp, path)
    except BaseException:
        with contextlib.suppress(FileNotFoundError):
            os.unlink(tmp)
        raise
    return path
