"""Where artifacts live. Local paths and globs here; object-store URIs plug in beside them."""
from __future__ import annotations

import contextlib
import glob
import hashlib
import os
import shutil
from pathlib import Path
from typing import Iterator

from .errors import DataError


def expand(uri: str) -> list[Path]:
    """The files a data URI names: one path, a directory's files, or a glob, sorted."""
    if any(ch in uri for ch in "*?["):
        paths = sorted(Path(p) for p in glob.glob(uri, recursive=True) if Path(p).is_file())
        if not paths:
            raise DataError(f"no file matches {uri!r}; expected a glob that names at least one file")
        return paths
    path = Path(uri)
    if path.is_dir():
        paths = sorted(p for p in path.iterdir() if p.is_file() and not p.name.startswith("."))
        if not paths:
            raise DataError(f"directory {uri} holds no files")
        return paths
    if not path.exists():
        raise DataError(f"data file {uri} does not exist; expected a path, a directory or a glob")
    return [path]


def content_hash(paths: list[Path]) -> str:
    digest = hashlib.sha256()
    for path in paths:
        with open(path, "rb") as fh:
            for chunk in iter(lambda: fh.read(1 << 20), b""):
                digest.update(chunk)
    return digest.hexdigest()[:16]


@contextlib.contextmanager
def atomic_path(target: str | os.PathLike) -> Iterator[Path]:
    """Yield a temporary sibling of ``target``; it becomes ``target`` only if the block succeeds.

    A step that fails or is killed half way leaves no half-written file or directory behind.
    """
    target = Path(target)
    target.parent.mkdir(parents=True, exist_ok=True)
    tmp = target.with_name(f".{target.name}.partial-{os.getpid()}")
    _remove(tmp)
    try:
        yield tmp
        _remove(target)
        os.replace(tmp, target)
    finally:
        _remove(tmp)


def _remove(path: Path) -> None:
    if path.is_dir() and not path.is_symlink():
        shutil.rmtree(path)
    elif path.exists() or path.is_symlink():
        path.unlink()
