"""Local paths and fsspec URLs opened the same way: the readers' I/O primitives."""

from __future__ import annotations

import gzip
import os
import zlib
from collections.abc import Mapping
from typing import IO, Any, Final

import fsspec
from fsspec.implementations.local import LocalFileSystem

from customer_sync.schemas.errors import InputError

READ_ERRORS: Final = (OSError, EOFError, zlib.error)
"""What reading a file may raise: OS errors, and gzip's truncated (``EOFError``) or corrupt
(``zlib.error``) streams; ``unreadable`` says which one it was."""


def filesystem(
    path: str, storage_options: Mapping[str, Any] | None
) -> tuple[fsspec.AbstractFileSystem, str]:
    """The filesystem of a path or URL, and the path within it."""
    try:
        fs, fs_path = fsspec.core.url_to_fs(path, **dict(storage_options or {}))
    except (ImportError, ValueError) as error:
        raise InputError(path, f"cannot open this location ({error})") from error
    return fs, fs_path


def is_local(path: str, storage_options: Mapping[str, Any] | None) -> bool:
    """Whether the path is on the local disk (pyarrow then reads it directly, fastest)."""
    fs, _ = filesystem(path, storage_options)
    return isinstance(fs, LocalFileSystem)


def local_path(path: str) -> str:
    """A local path as pyarrow wants it (no ``file://``, ``~`` expanded)."""
    return os.path.expanduser(path.removeprefix("file://"))


def open_binary(path: str, storage_options: Mapping[str, Any] | None) -> IO[bytes]:
    """A binary stream of the file; ``.gz`` files are decompressed."""
    compression = "gzip" if path.lower().endswith(".gz") else None
    opened: IO[bytes] = fsspec.open(
        path, "rb", compression=compression, **dict(storage_options or {})
    ).open()
    return opened


def file_size(path: str, storage_options: Mapping[str, Any] | None) -> int | None:
    """The file's size in bytes, or None when the filesystem cannot say."""
    fs, fs_path = filesystem(path, storage_options)
    try:
        return int(fs.size(fs_path))
    except (OSError, TypeError):
        return None


def unreadable(path: str, error: BaseException) -> InputError:
    """One line for a file that could not be read (``READ_ERRORS``), naming the cause."""
    text = str(error)
    if isinstance(error, gzip.BadGzipFile) or "incorrect header check" in text:
        return InputError(path, "is not gzip-compressed, though its name ends in .gz")
    if isinstance(error, EOFError) or "Truncated compressed stream" in text:
        return InputError(path, "is a truncated gzip file (it ends before its compressed data)")
    if isinstance(error, zlib.error) or "inflate failed" in text:
        return InputError(path, "is a corrupt gzip file (its compressed data cannot be read)")
    if isinstance(error, IsADirectoryError):
        return InputError(path, "is a folder, not a file")
    if isinstance(error, PermissionError):
        return InputError(path, "cannot be read (permission denied)")
    return InputError(path, f"cannot be read ({type(error).__name__})")


def not_a_regular_file(path: str, storage_options: Mapping[str, Any] | None) -> InputError | None:
    """Why a local path that is listed cannot be read as a file, or None when it can.

    A FIFO would block the reader for ever, a broken link or a folder only fails later
    with a misleading "not found": each gets its own message before anything is opened.
    """
    if not is_local(path, storage_options):
        return None
    local = local_path(path)
    if os.path.islink(local) and not os.path.exists(local):
        return InputError(path, "is a broken symbolic link (its target does not exist)")
    if os.path.isdir(local):
        return InputError(path, "is a folder, not a file")
    if os.path.exists(local) and not os.path.isfile(local):
        return InputError(path, "is not a regular file (a pipe, socket or device)")
    return None
