"""What an extraction run did: per-video results and the run's totals."""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path


@dataclass(frozen=True)
class VideoResult:
    """One extracted video.

    ``flow_seconds`` is the time spent inside the flow algorithm alone, so a
    benchmark can set the bare algorithm against the whole tool (decoding,
    resizing, quantizing, JPEG, writing) per pair.
    """

    pairs: int
    num_frames: int
    bytes_written: int
    seconds: float
    flow_seconds: float
    width: int
    height: int


@dataclass(frozen=True)
class Failure:
    """A video that could not be extracted; ``video`` is its path as listed."""

    video: str
    reason: str


@dataclass
class RunTotals:
    """What a run over many videos did, whatever each video's job (extracting, resizing):
    counts, bytes, wall time and the failures. Subclasses count their own results (``add``)
    and say what else to report (``details``)."""

    done: int = 0
    skipped: int = 0
    bytes_written: int = 0
    wall_seconds: float = 0.0
    failures: list[Failure] = field(default_factory=list)
    failures_file: Path | None = None
    in_use: list[Failure] = field(default_factory=list)  # skipped: another writer held or completed them

    @property
    def failed(self) -> int:
        return len(self.failures)

    def add(self, result: object) -> None:
        raise NotImplementedError

    def details(self) -> list[str]:
        return []

    def format(self) -> str:
        lines = [f"videos: {self.done} done, {self.skipped} skipped (already complete), {self.failed} failed",
                 *self.details()]
        if self.in_use:
            lines.append(f"{len(self.in_use)} videos skipped as another writer's; first: {self.in_use[0].video}: "
                         f"{self.in_use[0].reason}")
        if self.failures:
            where = f", listed in {self.failures_file}" if self.failures_file else ""
            lines.append(f"{self.failed} videos failed{where}; first: {self.failures[0].video}: "
                         f"{self.failures[0].reason}")
        return "\n".join(lines)


@dataclass
class Summary(RunTotals):
    """Totals of an extraction run."""

    pairs: int = 0
    flow_seconds: float = 0.0

    def add(self, result: VideoResult) -> None:
        self.done += 1
        self.pairs += result.pairs
        self.bytes_written += result.bytes_written
        self.flow_seconds += result.flow_seconds

    @property
    def kib_per_pair(self) -> float:
        return self.bytes_written / 1024 / self.pairs if self.pairs else 0.0

    @property
    def pairs_per_second(self) -> float:
        return self.pairs / self.wall_seconds if self.wall_seconds > 0 else 0.0

    def details(self) -> list[str]:
        written = f"pairs: {self.pairs}, written: {self.bytes_written / 2**20:.1f} MiB ({self.kib_per_pair:.1f} KiB per pair)"
        timed = (f"wall time: {self.wall_seconds:.1f} s, {self.pairs_per_second:.1f} pairs/s "
                 f"({self.flow_seconds:.1f} s inside the flow algorithm, summed over workers)")
        return [written, timed]
