"""Keeping a work dir sound: one run at a time, whole files only, damaged files set
aside, write probes.

A work dir is a resume log: two runs writing it at once would mix their checkpoints,
and a file that cannot be read back must not stop every later run, nor be deleted
(it may be the only copy of hours of training). So a run holds `<workdir>/.lock`,
every file (or saved folder) is written beside its place and renamed into it
(`replacing`), and a damaged file is renamed `<name>.corrupt-<time>` (`set_aside`) and
the work it held redone.
"""

from __future__ import annotations

import contextlib
import errno
import fcntl
import os
import re
import shutil
import tempfile
import time

LOCK_FILE = ".lock"


class WorkdirBusy(RuntimeError):
  """Another live process holds the work dir's lock."""


@contextlib.contextmanager
def lock(workdir: str):
  """Holds an exclusive `fcntl` lock on `<workdir>/.lock` for the block.

  The kernel drops the lock when the process exits or crashes, so a killed run never
  leaves a stale lock behind; the file itself stays (removing it would let a third
  process lock a fresh file while the second still holds the old one).
  """
  os.makedirs(workdir, exist_ok=True)
  path = os.path.join(workdir, LOCK_FILE)
  fd = os.open(path, os.O_RDWR | os.O_CREAT, 0o644)
  try:
    try:
      fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except BlockingIOError:
      holder = os.pread(fd, 32, 0).decode(errors="replace").strip() or "unknown"
      raise WorkdirBusy(f"work dir {workdir} is in use by process {holder} ({path}); wait "
                        "for it to finish or use another --workdir") from None
    os.ftruncate(fd, 0)
    os.pwrite(fd, f"{os.getpid()}\n".encode(), 0)
    yield path
  finally:
    os.close(fd)  # Closing the last descriptor releases the lock.


@contextlib.contextmanager
def replacing(path: str, *, suffix: str = "", folder: bool = False):
  """Yields a temporary path beside `path` for the block to write; renames it onto `path`
  after the block, so nothing half-written is ever under `path`.

  `suffix` ends the temporary file's name (np.savez adds ".npz" to a name without it).
  `folder`: the temporary is a folder, and a folder already at `path` is moved into a
  second temporary folder first and removed only once the new one is in place. On any
  failure the temporary goes and an OSError names `path` (a full disk says which file).
  """
  parent, name = os.path.split(os.path.abspath(path))
  os.makedirs(parent, exist_ok=True)
  tmp = (tempfile.mkdtemp(prefix=f".{name}.tmp-", dir=parent) if folder
         else f"{path}.tmp{os.getpid()}{suffix}")
  old = None
  try:
    yield tmp
    if folder and os.path.lexists(path):
      old = tempfile.mkdtemp(prefix=f".{name}.old-", dir=parent)
      os.replace(path, os.path.join(old, name))
    os.replace(tmp, path)
  except OSError as e:
    raise OSError(e.errno, e.strerror, path) from None
  finally:
    if os.path.isdir(tmp):
      shutil.rmtree(tmp)
    elif os.path.lexists(tmp):
      os.remove(tmp)
  if old:  # Only once the new one is in place: a failed rename keeps the old one there.
    shutil.rmtree(old)


def set_aside(path: str) -> str:
  """Renames a damaged file or folder to `<path>.corrupt-<UTC time>`; returns the new path.

  Never deletes: the user may want to inspect or recover it.
  """
  stamp = time.strftime("%Y%m%dT%H%M%S", time.gmtime())
  target, n = f"{path}.corrupt-{stamp}", 1
  while os.path.exists(target):
    n += 1
    target = f"{path}.corrupt-{stamp}-{n}"
  os.replace(path, target)
  return target


def check_writable(directory: str, what: str) -> None:
  """Creates and removes a probe file in `directory`, so that a read-only or full disk
  is found before training rather than after it (OSError -> one-line ValueError)."""
  probe = os.path.join(directory, f".write-probe-{os.getpid()}")
  if os.path.exists(directory) and not os.path.isdir(directory):
    raise ValueError(f"{what} {directory} is a file, not a folder")
  try:
    os.makedirs(directory, exist_ok=True)
    with open(probe, "wb") as f:
      f.write(b"probe")
    os.remove(probe)
  except OSError as e:
    raise ValueError(f"{what} {directory} is not writable ({e.strerror or e})") from None


def disk_full(error: BaseException) -> str | None:
  """The one line to say for a write that failed on a full disk, else None.

  Looks through the exception and its causes for an OSError(ENOSPC) or for the text
  tensorstore (orbax's writer) gives it: "RESOURCE_EXHAUSTED: Error writing ...".
  """
  seen = set()
  while error is not None and id(error) not in seen:
    seen.add(id(error))
    text = " ".join(str(error).split())
    path = None
    if isinstance(error, OSError) and error.errno in (errno.ENOSPC, errno.EDQUOT):
      path = error.filename or "a file"
    elif "No space left on device" in text or "RESOURCE_EXHAUSTED" in text:
      named = re.findall(r'(?:local file|Error writing) "([^"]+)"', text)
      path = named[-1] if named else "a checkpoint"
    if path is not None:
      return (f"no space left on device while writing {os.fspath(path)}; free space and "
              "run the same command to resume")
    error = error.__cause__ or error.__context__
  return None
