"""Who is writing a video: a lock file per video, so two runs on one output root never
write (or delete) the same video's files.

Two runs meet on one root when a SLURM array's shards overlap or a rerun starts while an
old job still runs. Before it writes a video, a writer creates ``<id>.lock`` beside the
video's output, atomically (a complete file linked into place, which fails if one is
there: also on NFS), holding its host, pid and the pid's start time. A second writer
finds the lock and skips the video (``VideoBusy``). A lock whose writer is dead (same
host, the pid gone or reused) is stale, left by a killed run, and is taken over. A lock
from another host is honoured until it is removed: this host cannot see that process.

The writer's temporary output carries its own tag (``writer_tag``), so even writers that
ignore the lock never write into one another's files.
"""

from __future__ import annotations

import os
import shutil
import socket
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

__all__ = ["LOCK_SUFFIX", "TMP_MARK", "VideoBusy", "VideoLock", "Writer", "claim", "completed_file", "lock_path",
           "temporary", "writer_tag"]  # fmt: skip

LOCK_SUFFIX = ".lock"
TMP_MARK = ".tmp-"  # in every temporary name: "<id>.tmp-<host>-<pid>", "<id>.zip.tmp-<host>-<pid>"


class VideoBusy(Exception):
    """Another live writer holds the video's lock."""


@dataclass(frozen=True)
class Writer:
    """A process that may hold a lock: its host, pid and the pid's start time (0 unknown)."""

    host: str
    pid: int
    started: int

    @classmethod
    def current(cls) -> Writer:
        pid = os.getpid()
        return cls(socket.gethostname(), pid, _process_state(pid)[1])

    @classmethod
    def parse(cls, text: str) -> Writer | None:
        try:
            host, pid, started = text.split()
            return cls(host, int(pid), int(started))
        except ValueError:
            return None

    def tag(self) -> str:
        """Its part of a temporary name (``writer_tag`` in that process)."""
        return f"{self.host}-{self.pid}"

    def text(self) -> str:
        return f"{self.host} {self.pid} {self.started}\n"

    def alive(self) -> bool:
        """False only when surely dead: on this host, its pid gone or now another process's."""
        if self.host != socket.gethostname():
            return True
        try:
            os.kill(self.pid, 0)
        except ProcessLookupError:
            return False
        except PermissionError:
            pass  # a process of another user: a reused pid, unless the start times agree
        state, started = _process_state(self.pid)
        # A zombie has ended: a killed worker adopted by an init that does not reap stays one.
        return state not in ("Z", "X") and not (started and self.started and started != self.started)

    def __str__(self) -> str:
        return f"pid {self.pid} on {self.host}"


def _process_state(pid: int) -> tuple[str, int]:
    """The process's state letter and start time in clock ticks since boot (Linux: a reused
    pid is told apart by it); ("", 0) where unknown."""
    try:
        with open(f"/proc/{pid}/stat", "rb") as stat:
            fields = stat.read().rsplit(b")", 1)[1].split()
        return fields[0].decode(), int(fields[19])
    except (OSError, IndexError, ValueError):
        return "", 0


def writer_tag() -> str:
    """This process's part of a temporary name: ``<host>-<pid>``."""
    return f"{socket.gethostname()}-{os.getpid()}"


def temporary(final: Path, writer: str | None = None) -> Path:
    """Where ``writer`` (a ``writer_tag``, default this process's) builds the output named
    ``final`` until it is complete: ``<final>.tmp-<host>-<pid>``."""
    return final.with_name(f"{final.name}{TMP_MARK}{writer or writer_tag()}")


@contextmanager
def completed_file(path: Path) -> Iterator[Path]:
    """The temporary path (``temporary(path)``) to write ``path``'s content to; renamed to
    ``path`` when the block ends normally, removed when it raises (Ctrl-C and SIGTERM
    included). A reader never finds half a file under ``path``: a writer killed outright
    leaves only its temporary name. ``path``'s folder is created.

    Used for whatever a script, player or resumed run reads whole: classify's JSON lines and
    rendered video, feature arrays, exported networks, checkpoints."""
    path.parent.mkdir(parents=True, exist_ok=True)
    partial = temporary(path)
    try:
        yield partial
        os.replace(partial, path)
    except BaseException:
        partial.unlink(missing_ok=True)
        raise


class VideoLock:
    """The lock ``path`` (``<id>.lock``), held by this process once ``acquire`` returned."""

    def __init__(self, path: Path):
        self.path = path
        self.me = Writer.current()
        self.stale: Writer | None = None  # the dead writer whose lock this one took over
        self._held = False

    def acquire(self) -> VideoLock:
        """Take the lock, taking over a stale one; raises VideoBusy while a live writer holds it."""
        self.path.parent.mkdir(parents=True, exist_ok=True)
        mine = self.path.with_name(f"{self.path.name}.{writer_tag()}")
        mine.write_text(self.me.text(), encoding="utf-8")
        try:
            for _ in range(3):
                try:
                    os.link(mine, self.path)  # atomic, and the lock is whole when it appears
                    self._held = True
                    return self
                except FileExistsError:
                    self._take_over_if_stale()
            raise VideoBusy(f"{self.path} keeps changing owner")
        finally:
            mine.unlink(missing_ok=True)

    def _take_over_if_stale(self) -> None:
        try:
            text = self.path.read_text(encoding="utf-8")
        except FileNotFoundError:
            return  # released meanwhile: try again
        owner = Writer.parse(text)
        if owner is None or owner.alive():
            raise VideoBusy(f"being written by {owner or 'an unknown writer'} (lock {self.path})")
        # Renamed aside, not unlinked: of two processes taking over at once only one moves
        # the stale lock; the other finds nothing, or the winner's live lock, which it puts back.
        aside = self.path.with_name(f"{self.path.name}.stale-{writer_tag()}")
        try:
            os.rename(self.path, aside)
        except FileNotFoundError:
            return
        if aside.read_text(encoding="utf-8") != text:
            try:
                os.link(aside, self.path)
            except FileExistsError:
                pass
        else:
            self.stale = owner
        aside.unlink(missing_ok=True)

    def release(self) -> None:
        """Remove the lock if this process holds it."""
        if self._held:
            self._held = False
            try:
                if Writer.parse(self.path.read_text(encoding="utf-8")) == self.me:
                    self.path.unlink()
            except OSError:
                pass

    def __enter__(self) -> VideoLock:
        return self.acquire()

    def __exit__(self, *exc_info: object) -> None:
        self.release()


def lock_path(output: Path) -> Path:
    """The lock of the video whose output is named ``output``: ``<output>.lock`` beside it."""
    return output.with_name(output.name + LOCK_SUFFIX)


def claim(final: Path, lock_of: Path | None = None, others: Sequence[Path] = ()) -> VideoLock:
    """The held lock of the video whose output is named ``final`` (its lock named after
    ``lock_of``, default ``final``), with what killed writers left removed: the temporary
    outputs (of ``final`` and of the video's ``others``) of the writer whose stale lock was
    taken over, and older versions' ``<final>.tmp``. Raises VideoBusy while another live
    writer holds it."""
    lock = VideoLock(lock_path(lock_of or final)).acquire()
    if lock.stale is not None:
        for output in (final, *others):
            _remove(temporary(output, lock.stale.tag()))
    _remove(final.with_name(final.name + ".tmp"))
    return lock


def _remove(path: Path) -> None:
    """Remove a temporary output, a folder or a file; best effort (the disk may be the problem)."""
    try:
        if path.is_dir():
            shutil.rmtree(path, ignore_errors=True)
        else:
            path.unlink(missing_ok=True)
    except OSError:
        pass
