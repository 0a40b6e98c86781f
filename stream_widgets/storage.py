"""Atomic writes: a file, a set of files or a folder is replaced whole, or not at all.

A process killed in the middle of a write (SIGKILL, SIGTERM, a power cut once the data is on disk)
leaves the destination as it was, or as the writer meant it to be, never a mix:

- `write_file(path, data)`: one file, written to a temp file beside it, flushed and renamed over it.
- `write_files(folder, files)`: several files of one folder. The new folder is staged beside the old
  one (other entries of the old folder are hard-linked in, so they stay) and the two are swapped in one
  step (Linux ``renameat2(RENAME_EXCHANGE)``; elsewhere two renames, which the next write completes if a
  kill falls between them).
- `staged_folder(target)`: a whole folder filled by the caller, moved into place when the block ends.

Every write keeps what the user set up at the destination: an existing file's permission bits (a new
file gets ``0o666`` minus the umask, as `open` gives), and a symlink stays a symlink (the write goes to
its target). Temp names carry the writer's process id, ``.<name>.sw-<pid>-<token>.<kind>``; leftovers
of writers that are no longer running (killed, or killed by a crash) are removed by the next write to
the same destination (`remove_leftovers`), never those of a writer still running.
"""

from __future__ import annotations

import ctypes
import errno
import math
import os
import re
import secrets
import shutil
import stat
import sys
import warnings
from collections.abc import Callable, Iterator, Mapping
from contextlib import contextmanager
from pathlib import Path
from typing import Any

__all__ = ["json_safe", "remove_leftovers", "staged_folder", "temp_path", "write_file", "write_files"]

Content = bytes | str | Callable[[Path], None]
"""What `write_file` and `write_files` write: bytes, UTF-8 text, or a function that writes the file at
the path it is given (e.g. ``lambda p: save_file(tensors, p)``)."""

_MARK = ".sw-"
_LEFTOVER = re.compile(r"\.sw-(?P<pid>\d+)-[0-9a-f]+\.(?:tmp|new|ready|old)")
_warned: set[str] = set()


# ----------------------------------------------------------------- names and leftovers
def temp_path(destination: str | os.PathLike, kind: str = "tmp") -> Path:
    """A fresh temp name beside `destination`: ``.<name>.sw-<pid>-<token>.<kind>``.

    `remove_leftovers(destination)` removes it once this process is gone.
    """
    if kind not in ("tmp", "new", "ready", "old"):
        raise ValueError(f"kind must be 'tmp', 'new', 'ready' or 'old', got {kind!r}")
    destination = Path(destination)
    return destination.parent / f".{destination.name}{_MARK}{os.getpid()}-{secrets.token_hex(4)}.{kind}"


def _running(pid: int) -> bool:
    # Process ids are per host (and per PID namespace): a writer on another machine sharing the folder
    # looks dead here, so its temp file could go. Kills on one host are the case this handles.
    if pid == os.getpid():
        return True
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:  # alive, owned by another user
        return True
    except OverflowError:
        return False
    return True


def remove_leftovers(destination: str | os.PathLike, *, legacy: re.Pattern[str] | None = None) -> list[Path]:
    """Remove the temp files and folders of earlier writes to `destination` whose writer is gone.

    Args:
        destination: The file or folder that was being written.
        legacy: Also remove siblings whose whole name matches this pattern (temp names of older
            versions, without a process id) once they are over an hour old.

    Returns:
        The paths removed. One that cannot be removed (no permission) is left for a later write: it
        never fails the write that is cleaning up.
    """
    import time

    destination = Path(destination)
    parent, prefix = destination.parent, f".{destination.name}{_MARK}"
    try:
        names = os.listdir(parent)
    except OSError:  # a missing or unreadable folder has nothing of ours to clean
        return []
    removed = []
    for name in names:
        path = parent / name
        if name.startswith(prefix):
            match = _LEFTOVER.fullmatch(name[len(destination.name) + 1 :])
            if match is None or _running(int(match["pid"])):
                continue
        elif legacy is not None and legacy.fullmatch(name):
            try:
                if time.time() - path.lstat().st_mtime < 3600:
                    continue
            except OSError:
                continue
        else:
            continue
        try:
            if path.is_dir() and not path.is_symlink():
                shutil.rmtree(path)
            else:
                path.unlink()
        except OSError:
            continue
        removed.append(path)
    return removed


def _real(path: str | os.PathLike) -> Path:
    """`path` with every symlink resolved (a dangling link gives its target), so writes go through."""
    return Path(os.path.realpath(os.fspath(path)))


def _fsync(path: Path, directory: bool = False) -> None:
    try:
        fd = os.open(path, os.O_RDONLY | (getattr(os, "O_DIRECTORY", 0) if directory else 0))
    except OSError:
        if directory:  # some platforms cannot open folders; the rename is still atomic
            return
        raise
    try:
        os.fsync(fd)
    except OSError as error:
        if not directory or error.errno not in (errno.EINVAL, errno.EBADF, errno.EACCES):
            raise
    finally:
        os.close(fd)


# ----------------------------------------------------------------- one file
def _write_content(path: Path, content: Content) -> None:
    """Create `path` (which must not exist) with mode 0o666 minus the umask and write `content`."""
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL | getattr(os, "O_CLOEXEC", 0), 0o666)
    if callable(content):
        mode = stat.S_IMODE(os.fstat(fd).st_mode)  # the umask's choice, without calling os.umask
        os.close(fd)
        content(path)
        os.chmod(path, mode)  # writers that recreate the file (safetensors does, as 0o600) lose it
    else:
        data = content.encode("utf-8") if isinstance(content, str) else bytes(content)
        with os.fdopen(fd, "wb") as handle:
            handle.write(data)
    _fsync(path)


def write_file(path: str | os.PathLike, content: Content) -> Path:
    """Replace the file at `path` with `content`, atomically.

    The data goes to a temp file in the destination's folder, is flushed to disk and renamed over the
    destination: a reader, or a process killed at any point, sees the old file or the new one. A
    symlink at `path` is kept and its target replaced; an existing file's permission bits are kept.
    Leftover temp files of earlier writes that were killed are removed first.

    Args:
        path: The destination file. Its folder must exist.
        content: Bytes, text (written as UTF-8), or a function that writes the file at the path it gets.

    Returns:
        The path written (the symlink's target if `path` is a symlink).

    Raises:
        IsADirectoryError: If `path` is a folder.
        OSError: If the folder is missing or not writable (nothing is changed then).
    """
    target = _real(path)
    if target.is_dir():
        raise IsADirectoryError(errno.EISDIR, "is a folder, not a file", str(path))
    remove_leftovers(target)
    # A function writes inside a private temp folder: writers such as safetensors put temp files of
    # their own beside the path they are given, and those must go with ours if the process is killed.
    scratch = temp_path(target)
    tmp = scratch / target.name if callable(content) else scratch
    try:
        if callable(content):
            os.mkdir(scratch)
        _write_content(tmp, content)
        try:
            os.chmod(tmp, stat.S_IMODE(target.stat().st_mode))
        except FileNotFoundError:
            pass  # a new file: the umask decided its mode
        os.replace(tmp, target)
    finally:
        if os.path.isdir(scratch) and not os.path.islink(scratch):
            shutil.rmtree(scratch)
        elif os.path.lexists(scratch):
            os.unlink(scratch)
    _fsync(target.parent, directory=True)
    return target


# ----------------------------------------------------------------- folders
def _exchange(a: Path, b: Path) -> bool:
    """Swap two paths in one step (Linux renameat2 RENAME_EXCHANGE); False where that is unsupported."""
    if not sys.platform.startswith("linux"):
        return False
    try:
        libc = ctypes.CDLL(None, use_errno=True)
        renameat2 = libc.renameat2
    except (OSError, AttributeError):
        return False
    at_fdcwd, rename_exchange = -100, 2
    result = renameat2(at_fdcwd, os.fsencode(a), at_fdcwd, os.fsencode(b), ctypes.c_uint(rename_exchange))
    if result == 0:
        return True
    code = ctypes.get_errno()
    if code in (errno.EINVAL, errno.ENOSYS, errno.EOPNOTSUPP, errno.ENOTSUP):
        return False  # the file system cannot exchange: fall back to two renames
    raise OSError(code, os.strerror(code), str(a), None, str(b))


def _commit(stage: Path, target: Path, *, replace: bool) -> bool:
    """Move the complete folder `stage` to `target`. Returns False if `target` exists and not `replace`."""
    ready = stage.with_name(stage.name[: -len(".new")] + ".ready")
    os.rename(stage, ready)  # complete: from here on a kill leaves a set the next write can finish
    try:
        if not os.path.lexists(target):
            try:
                os.rename(ready, target)
                return True
            except OSError as error:
                if error.errno not in (errno.EEXIST, errno.ENOTEMPTY):
                    raise
                # another writer got there first
        if not replace:
            return False
        if _exchange(ready, target):
            old = ready.with_name(ready.name[: -len(".ready")] + ".old")
            os.rename(ready, old)  # the name now holds the old folder
            shutil.rmtree(old)
            return True
        old = temp_path(target, "old")
        os.rename(target, old)
        try:
            os.rename(ready, target)  # a kill just before this is finished by _finish_interrupted
        except BaseException:
            os.rename(old, target)
            raise
        shutil.rmtree(old)
        return True
    finally:
        if os.path.lexists(ready):
            shutil.rmtree(ready)


def _finish_interrupted(target: Path) -> None:
    """If a two-rename swap was killed between its renames (`target` gone, a complete set beside it),
    move that set into place before anything else touches `target`."""
    if os.path.lexists(target):
        return
    prefix = f".{target.name}{_MARK}"
    try:
        ready = sorted(
            (p for p in target.parent.iterdir() if p.name.startswith(prefix) and p.name.endswith(".ready")),
            key=lambda p: p.stat().st_mtime,
        )
    except OSError:
        return
    for candidate in reversed(ready):
        match = _LEFTOVER.fullmatch(candidate.name[len(target.name) + 1 :])
        if match and not _running(int(match["pid"])):
            try:
                os.rename(candidate, target)
                return
            except OSError:
                continue


@contextmanager
def staged_folder(target: str | os.PathLike, *, replace: bool = False) -> Iterator[Path]:
    """A new folder beside `target`, filled by the caller and moved into place when the block ends.

    On leaving the block without an exception, the staged folder becomes `target` in one step (an
    existing `target` is swapped out and removed if `replace`, else left as it is and the staged folder
    discarded: another writer got there first). On an exception the staged folder is removed. A kill at
    any point leaves `target` as it was, or complete; the stage is removed by the next write.

    Yields:
        The staged folder (mode 0o777 minus the umask), empty.

    Example:
        >>> with staged_folder(cache / "model") as stage:
        ...     model.save_pretrained(stage)
    """
    target = _real(target)
    target.parent.mkdir(parents=True, exist_ok=True)
    _finish_interrupted(target)
    remove_leftovers(target)
    stage = temp_path(target, "new")
    os.mkdir(stage)
    try:
        yield stage
        for path in sorted(stage.rglob("*"), reverse=True):
            if path.is_file() and not path.is_symlink():
                _fsync(path)
        _commit(stage, target, replace=replace)
        _fsync(target.parent, directory=True)
    finally:
        if os.path.lexists(stage):
            shutil.rmtree(stage)


def _link_or_copy(source: str, destination: str) -> None:
    try:
        os.link(source, destination, follow_symlinks=False)
    except OSError:  # no hard links here (another file system, protected links): copy instead
        shutil.copy2(source, destination, follow_symlinks=False)


def _warn_once(key: str, message: str) -> None:
    if key not in _warned:
        _warned.add(key)
        warnings.warn(message, RuntimeWarning, stacklevel=3)


def write_files(folder: str | os.PathLike, files: Mapping[str, Content]) -> Path:
    """Write several files into `folder` so that a kill leaves all the old ones or all the new ones.

    The new folder is staged beside the old: the given files are written into it, every other entry
    of the old folder is hard-linked in (copied where links are impossible), the folder's permission
    bits are copied, and the two folders are swapped in one step. Entries added to the old folder by
    another process during the write are lost; a shell whose working directory is the old folder sees
    it emptied (``cd .`` returns to the new one). A symlink at `folder` is kept and its target replaced;
    a file of the set keeps the permission bits of the file it replaces (a symlink there is replaced by
    the file: the set lives inside the folder).

    Where the folder cannot be swapped (it is a mount point, or its parent is not writable) the files
    are replaced one by one, each atomically, with a one-time warning: a kill there can leave a mix.

    Args:
        folder: The destination folder, created if missing.
        files: File name (no path separators) -> bytes, text or a function writing the file at a path.

    Returns:
        The folder written (the symlink's target if `folder` is a symlink).

    Raises:
        ValueError: For a file name that is empty, a path, or a temp name of this module.
        NotADirectoryError: If `folder` exists and is not a folder.
    """
    for name in files:
        if not isinstance(name, str) or not name or name in (".", "..") or "/" in name or os.sep in name:
            raise ValueError(f"file names must be plain names inside the folder, got {name!r}")
        if _MARK in name:
            raise ValueError(f"{name!r} looks like a temp name of stream_widgets.storage; choose another")
    target = _real(folder)
    if os.path.lexists(target) and not target.is_dir():
        raise NotADirectoryError(errno.ENOTDIR, "exists and is not a folder", str(folder))
    target.parent.mkdir(parents=True, exist_ok=True)
    if target.is_dir() and (os.path.ismount(target) or not os.access(target.parent, os.W_OK | os.X_OK)):
        _warn_once(
            f"files:{target}",
            f"{target} cannot be replaced as a whole (it is a mount point or its parent folder is not "
            "writable): writing its files one by one, so a kill during the write can leave a mix of old "
            "and new files",
        )
        for name, content in files.items():
            write_file(target / name, content)
        return target
    with staged_folder(target, replace=True) as stage:
        if target.is_dir():
            os.rmdir(stage)
            shutil.copytree(
                target,
                stage,
                symlinks=True,
                copy_function=_link_or_copy,
                ignore=lambda where, names: set(files) if Path(where) == target else set(),
            )
        for name, content in files.items():
            _write_content(stage / name, content)
            try:
                os.chmod(stage / name, stat.S_IMODE((target / name).stat().st_mode))
            except FileNotFoundError:
                pass  # a new file: the umask decided its mode
    return target


def json_safe(value: Any) -> Any:
    """`value` as plain JSON: numpy arrays and scalars (anything with ``tolist``) to Python, NaN and
    infinities to None, keys to strings, anything else unknown to `str`."""
    if isinstance(value, dict):
        return {str(k): json_safe(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [json_safe(v) for v in value]
    if hasattr(value, "tolist"):
        return json_safe(value.tolist())
    if isinstance(value, float) and not math.isfinite(value):
        return None
    if value is None or isinstance(value, str | int | float | bool):
        return value
    return str(value)
