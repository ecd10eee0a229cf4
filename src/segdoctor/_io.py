"""Atomic file writes: write to a temporary file in the same folder, then rename over the target.

A process killed mid-write leaves either the old file or the new one, never a truncated file.
"""

from __future__ import annotations

import contextlib
import os
import tempfile
from collections.abc import Callable, Iterator
from pathlib import Path

from segdoctor.errors import SegdoctorError


@contextlib.contextmanager
def atomic_path(target: str | Path, suffix: str = "") -> Iterator[Path]:
    """Yield a temporary path next to ``target``; on success it replaces ``target`` atomically.

    ``suffix`` is kept on the temporary name (Keras insists that models end in ``.keras``).

    Example:
        >>> import tempfile, pathlib
        >>> out = pathlib.Path(tempfile.mkdtemp()) / "a.txt"
        >>> with atomic_path(out) as tmp:
        ...     _ = tmp.write_text("hello")
        >>> out.read_text()
        'hello'
    """
    target = Path(target)
    target.parent.mkdir(parents=True, exist_ok=True)
    fd, name = tempfile.mkstemp(
        prefix=f".{target.name}.",
        suffix=".tmp" + suffix,
        dir=target.parent,
    )
    os.close(fd)
    tmp = Path(name)
    try:
        yield tmp
        with open(tmp, "rb+") as fh:  # make the bytes durable before the rename
            os.fsync(fh.fileno())
        os.replace(tmp, target)
    finally:
        if tmp.exists():
            tmp.unlink()


TEMPORARY_GLOB = ".*.tmp*"
"""What :func:`atomic_path` names its temporaries: ``.<target name>.<random>.tmp[<suffix>]``."""


def remove_stale_temporaries(directory: str | Path) -> list[str]:
    """Delete the temporaries that :func:`atomic_path` left in ``directory``; return their names.

    A process killed while it writes (SIGKILL, a power cut) cannot remove its temporary file; the
    target itself is intact (it is replaced only by a complete file). The next run in the same
    folder calls this before it writes anything, so the leftovers do not pile up.
    """
    removed = []
    for path in sorted(Path(directory).glob(TEMPORARY_GLOB)):
        if path.is_file():
            path.unlink(missing_ok=True)
            removed.append(path.name)
    return removed


def atomic_write_text(target: str | Path, text: str) -> Path:
    """Write ``text`` to ``target`` atomically (UTF-8)."""
    with atomic_path(target) as tmp:
        # backslashreplace: a file name with undecodable bytes must not lose the whole file
        tmp.write_text(text, encoding="utf-8", errors="backslashreplace")
    return Path(target)


def atomic_write_bytes(target: str | Path, data: bytes) -> Path:
    """Write ``data`` to ``target`` atomically."""
    with atomic_path(target) as tmp:
        tmp.write_bytes(data)
    return Path(target)


def atomic_save(target: str | Path, save: Callable[[Path], object], suffix: str = "") -> Path:
    """Call ``save(tmp_path)`` and move the result onto ``target`` atomically."""
    with atomic_path(target, suffix=suffix) as tmp:
        save(tmp)
    return Path(target)


def check_writable(folder: str | Path) -> Path:
    """Fail early, with a clear message, when ``folder`` cannot be created or written to."""
    folder = Path(folder)
    try:
        folder.mkdir(parents=True, exist_ok=True)
        probe = folder / ".segdoctor-write-test"
        probe.write_bytes(b"0" * 1024 * 1024)  # 1 MiB: also catches a nearly full disk
        probe.unlink()
    except OSError as exc:
        raise SegdoctorError(
            f"The output folder {folder} is not writable ({exc.strerror})",
            expected="a folder segdoctor can create and write model checkpoints into",
            fix="choose another --out folder, free disk space, or fix its permissions.",
        ) from None
    return folder
