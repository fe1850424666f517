"""Filesystems and atomic writes: every file uetool writes goes through `write_atomic` (local paths or any pyarrow
filesystem URI such as s3://...)."""

from __future__ import annotations

import uuid
from pathlib import Path

import pyarrow.fs as pafs

__all__ = ["resolve_filesystem", "write_atomic", "file_exists", "read_bytes", "temporary_files",
           "remove_temporary_files"]


def resolve_filesystem(root: str | Path) -> tuple[pafs.FileSystem, str]:
    """(filesystem, path) for a local path or a URI."""
    text = str(root)
    if "://" in text:
        return pafs.FileSystem.from_uri(text)
    return pafs.LocalFileSystem(), str(Path(text).expanduser().absolute())


def write_atomic(fs: pafs.FileSystem, path: str, data: bytes) -> None:
    """Write then rename, so a crash never leaves a half-written file under the final name.

    The temporary name is unique: two writers of the same file (a sweep's results actor and a user running
    jobs.report) never interleave bytes in one temporary file.
    """
    tmp = f"{path}.{uuid.uuid4().hex[:12]}.tmp"
    try:
        with fs.open_output_stream(tmp) as out:
            out.write(data)
        fs.move(tmp, path)
    except BaseException:
        try:  # a full disk: leave no half-written temporary file behind
            fs.delete_file(tmp)
        except OSError:
            pass
        raise


def temporary_files(fs: pafs.FileSystem, directory: str) -> list[str]:
    """`write_atomic`'s temporary files in `directory` (what a killed writer leaves behind), sorted."""
    infos = fs.get_file_info(pafs.FileSelector(directory, allow_not_found=True))
    return sorted(i.path for i in infos if i.type == pafs.FileType.File and i.base_name.endswith(".tmp"))


def remove_temporary_files(fs: pafs.FileSystem, directory: str) -> int:
    """Delete `write_atomic`'s leftover temporary files in `directory` (call it only when no writer can be alive
    there, e.g. under the job's store lock); returns how many."""
    leftovers = temporary_files(fs, directory)
    for path in leftovers:
        fs.delete_file(path)
    return len(leftovers)


def file_exists(fs: pafs.FileSystem, path: str) -> bool:
    return fs.get_file_info(path).type == pafs.FileType.File


def read_bytes(fs: pafs.FileSystem, path: str) -> bytes:
    with fs.open_input_stream(path) as f:
        return f.read()
