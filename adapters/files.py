"""Local paths and fsspec URLs opened the same way: the readers' I/O primitives."""

from __future__ import annotations

import os
from collections.abc import Mapping
from typing import IO, Any

import fsspec
from fsspec.implementations.local import LocalFileSystem

from schemas.errors import InputError


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
