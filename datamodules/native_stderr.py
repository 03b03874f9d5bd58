"""Keeping native libraries' log lines off the user's terminal.

decord (its C++ log and FFmpeg's ``av_log``) and libjpeg write straight to file
descriptor 2 when they open a broken file: ``[11:04:28] .../video_reader.cc:83: ERROR
opening: x.mp4, Invalid data found when processing input``. Python cannot catch those
writes, so ``native_stderr_captured`` points fd 2 at a temporary file for the duration of
a block and gives the text back, for a reason column instead of the terminal. Python's
own ``sys.stderr`` (progress bars, warnings, error messages) keeps reaching the terminal
through a duplicate of the original descriptor.

fd 2 is process-wide: every thread's native writes inside the block are captured, which
is the point (the index probes videos on a thread pool), and the block must not be
nested.
"""

from __future__ import annotations

import os
import re
import sys
import tempfile
import threading
from collections.abc import Iterator
from contextlib import contextmanager

_LOCK = threading.Lock()


class CapturedStderr:
    """What native code wrote to fd 2 inside the block; ``new_text`` reads it piecewise."""

    def __init__(self, fd: int):
        self._fd = fd
        self._read = 0
        self.text = ""

    def new_text(self) -> str:
        """The text written since the last call (attributes lines to a sequential step)."""
        end = os.fstat(self._fd).st_size
        # pread leaves the shared file offset alone, so later native writes still append.
        data = os.pread(self._fd, end - self._read, self._read) if end > self._read else b""
        self._read = end
        text = data.decode("utf-8", errors="replace")
        self.text += text
        return text


def _writes_to_fd2(stream: object) -> bool:
    try:
        return stream.fileno() == 2  # type: ignore[attr-defined]
    except (AttributeError, OSError, ValueError):  # StringIO, pytest's capsys
        return False


@contextmanager
def native_stderr_captured() -> Iterator[CapturedStderr]:
    """Route fd 2 to a temporary file inside the block; ``sys.stderr`` still reaches the
    terminal. After the block, the capture's ``text`` holds everything written."""
    if not _LOCK.acquire(blocking=False):
        raise RuntimeError("native_stderr_captured is already active (fd 2 is process-wide)")
    try:
        original = sys.stderr
        if original is not None:
            original.flush()
        with tempfile.TemporaryFile() as sink:
            try:
                saved = os.dup(2)
            except OSError:  # no fd 2 at all (a daemon): nothing reaches a terminal anyway
                yield CapturedStderr(sink.fileno())
                return
            os.dup2(sink.fileno(), 2)
            replaced = original is not None and _writes_to_fd2(original)
            if replaced:
                sys.stderr = open(os.dup(saved), "w", buffering=1, encoding=original.encoding,  # noqa: SIM115
                                  errors=original.errors)
            capture = CapturedStderr(sink.fileno())
            try:
                yield capture
            finally:
                if replaced:
                    sys.stderr.close()
                    sys.stderr = original
                os.dup2(saved, 2)
                os.close(saved)
                capture.new_text()
    finally:
        _LOCK.release()


def native_reason(text: str, lines: int = 2) -> str:
    """The last ``lines`` distinct non-blank lines of captured log text, joined by "; ",
    without the ``[hh:mm:ss] file.cc:NN:`` and ``[codec @ 0x...]`` prefixes."""
    cleaned: list[str] = []
    for line in text.splitlines():
        line = line.strip()
        if line.startswith("[") and "] " in line:
            line = line.split("] ", 1)[1]
            where, _, rest = line.partition(": ")
            if rest and re.search(r"\.(cc|cpp|c|h):\d+$", where):
                line = rest
        if line and line not in cleaned:
            cleaned.append(line)
    return "; ".join(cleaned[-lines:])
