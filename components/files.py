"""Writing a local file or directory so that readers see all of it or nothing."""
from __future__ import annotations

import contextlib
import os
import shutil
from pathlib import Path
from typing import Iterator


@contextlib.contextmanager
def atomic_path(target: str | os.PathLike) -> Iterator[Path]:
    """Yield a temporary sibling of ``target``; it becomes ``target`` only if the block succeeds.

    A step that fails or is killed half way leaves no half-written file or directory behind. A
    step killed with SIGKILL cannot clean up its temporary sibling, so the next writer of the same
    target removes such leftovers first (one step owns an output path at a time).
    """
    target = Path(target)
    target.parent.mkdir(parents=True, exist_ok=True)
    tmp = target.with_name(f".{target.name}.partial-{os.getpid()}")
    for leftover in target.parent.glob(f".{target.name}.partial-*"):
        _remove(leftover)
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
