"""fastadmm._atomic: atomic writes, and the temporary files a killed writer leaves."""

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from fastadmm import _atomic

pytestmark = pytest.mark.skipif(os.name != "posix", reason="SIGKILL and pid checks are POSIX")

ROOT = Path(__file__).resolve().parents[1]

WRITER = """
import sys, time
from fastadmm._atomic import atomic_write

def write(f):
    f.write(b"x" * 1_000_000)
    f.flush()
    print("writing", flush=True)
    time.sleep(120)

atomic_write(sys.argv[1], write)
"""


def start_writer(target: Path) -> subprocess.Popen:
    """A process that is in the middle of atomic_write(target) (its temporary file exists) until killed."""
    proc = subprocess.Popen([sys.executable, "-c", WRITER, str(target)], stdout=subprocess.PIPE, cwd=ROOT)
    assert proc.stdout.readline() == b"writing\n"
    return proc


def kill(proc: subprocess.Popen) -> None:
    os.kill(proc.pid, signal.SIGKILL)
    proc.wait()
    proc.stdout.close()


def temporaries(folder: Path) -> list:
    return sorted(p.name for p in folder.iterdir() if p.name.endswith(".tmp"))


def test_the_next_write_removes_what_a_killed_writer_left(tmp_path):
    target = tmp_path / "ck.npz"
    proc = start_writer(target)
    kill(proc)
    left = temporaries(tmp_path)
    assert len(left) == 1 and left[0].startswith(".ck.npz.") and str(proc.pid) in left[0]
    assert (tmp_path / left[0]).stat().st_size == 1_000_000  # the leftover a killed writer leaves
    _atomic.atomic_write(target, lambda f: f.write(b"new"))
    assert target.read_bytes() == b"new"
    assert temporaries(tmp_path) == []


def test_a_live_writers_temporary_file_is_kept(tmp_path):
    target = tmp_path / "ck.npz"
    proc = start_writer(target)
    try:
        _atomic.atomic_write(target, lambda f: f.write(b"mine"))
        assert len(temporaries(tmp_path)) == 1  # the other process is still writing it
    finally:
        kill(proc)
    _atomic.atomic_write(target, lambda f: f.write(b"again"))
    assert temporaries(tmp_path) == []


def test_only_our_pattern_for_this_target_is_removed(tmp_path):
    host = _atomic._host_tag()
    dead = 2**22 + 12345  # above Linux's default pid_max (4,194,304): no such process
    assert not _atomic._pid_exists(dead)
    keep = [
        f".other.npz.{host}.{dead}.abcdefgh.tmp",  # another target's leftover
        f".ck.npz.{host}.{dead}.abc.tmp",  # not tempfile's 8-character random part
        "ck.npz.tmp", ".ck.npz.backup", f"ck.npz.{host}.{dead}.abcdefgh.tmp",  # not hidden
        ".ck.npz.abcdefgh.tmp.part",
    ]
    remove = [f".ck.npz.{host}.{dead}.abcd_f12.tmp"]
    for name in keep + remove:
        (tmp_path / name).write_bytes(b"x")
    assert sorted(p.name for p in _atomic.remove_stale_temporaries(tmp_path / "ck.npz")) == remove
    assert sorted(p.name for p in tmp_path.iterdir()) == sorted(keep)


def test_other_hosts_and_legacy_names_go_only_when_a_day_old(tmp_path):
    other_host = "0" * 8 if _atomic._host_tag() != "0" * 8 else "1" * 8
    names = [f".ck.npz.{other_host}.{os.getpid()}.abcdefgh.tmp",  # another host: its pid means nothing here
             ".ck.npz.abcdefgh.tmp",  # the name before the pid was part of it
             f".ck.npz.{_atomic._host_tag()}.{os.getpid()}.abcdefgh.tmp"]  # our pid (another thread's write?)
    for name in names:
        (tmp_path / name).write_bytes(b"x")
    assert _atomic.remove_stale_temporaries(tmp_path / "ck.npz") == []
    old = time.time() - _atomic.STALE_AFTER_S - 60
    for name in names:
        os.utime(tmp_path / name, (old, old))
    assert sorted(p.name for p in _atomic.remove_stale_temporaries(tmp_path / "ck.npz")) == sorted(names)


def test_a_cleanup_that_fails_never_fails_the_write(tmp_path, monkeypatch):
    def broken_scandir(path):
        raise PermissionError("no listing")

    monkeypatch.setattr(_atomic.os, "scandir", broken_scandir)
    _atomic.atomic_write(tmp_path / "m.bin", lambda f: f.write(b"ok"))
    assert (tmp_path / "m.bin").read_bytes() == b"ok"
