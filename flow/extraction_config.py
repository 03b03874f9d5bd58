"""``ExtractionConfig``: how flow is extracted, one video or many, per video or batched.

Its own file so that both extraction paths (``flow/extract.py``, ``flow/batched.py``) and the
files below them (``frames``, ``outputs``) read it without importing each other.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

from flow.algorithms import ALGORITHMS, FlowAlgorithm, create_algorithm
from flow.codec import DEFAULT_BOUND, DEFAULT_JPEG_QUALITY
from flow.frames import DECODERS, VideoFrames
from flow.layout import OURS, FrameLayout
from flow.stages import usable_cores
from flow.torch_codec import JPEG_ENCODERS

STORES = ("folders", "packed")


@dataclass(frozen=True)
class ExtractionConfig:
    """How to extract. ``short_side=0`` keeps the video's size; ``step`` samples every step-th frame.

    ``threads``: flow threads per worker, each computing its own frame pairs; 0 means the
    usable cores divided by the workers. ``decoder``: a name in ``flow.frames.DECODERS``.

    ``batch``: 0 extracts one video at a time (the per-video path); N >= 1 computes N pairs
    of several videos in one call of the algorithm's ``batch`` (``flow/batched.py``), and
    ``threads`` are then the decoding threads (and as many writing threads); ``jpeg`` names
    that path's encoder (``flow.torch_codec.JPEG_ENCODERS``).

    ``store``: ``folders`` (one folder of JPEGs per video) or ``packed`` (one zip per
    video, ``flow/packed.py``, its JPEGs written straight into ``<id>.zip.tmp``, which is
    renamed once complete).
    """

    algorithm: str = "tvl1"
    params: dict = field(default_factory=dict)
    short_side: int = 256
    step: int = 1
    bound: float = DEFAULT_BOUND
    quality: int = DEFAULT_JPEG_QUALITY
    backward: bool = False
    rgb: bool = False
    layout: FrameLayout = OURS
    decoder: str = "pyav"
    threads: int = 0
    batch: int = 0
    jpeg: str = "opencv"
    store: str = "folders"

    def __post_init__(self) -> None:
        if self.algorithm not in ALGORITHMS:
            raise ValueError(f"unknown flow algorithm {self.algorithm!r}; known: {', '.join(sorted(ALGORITHMS))}")
        if self.decoder not in DECODERS:
            raise ValueError(f"unknown decoder {self.decoder!r}; known: {', '.join(sorted(DECODERS))}")
        if self.short_side < 0:
            raise ValueError(f"short_side must be >= 0 (0 keeps the size), got {self.short_side}")
        if self.step < 1:
            raise ValueError(f"step must be >= 1, got {self.step}")
        if not self.bound > 0:
            raise ValueError(f"bound must be positive, got {self.bound}")
        if not 0 <= self.quality <= 100:
            raise ValueError(f"JPEG quality must be in 0..100, got {self.quality}")
        if self.threads < 0:
            raise ValueError(f"threads must be >= 0 (0: the usable cores over the workers), got {self.threads}")
        if self.batch < 0:
            raise ValueError(f"batch must be >= 0 (0: one video at a time), got {self.batch}")
        if self.batch and not hasattr(ALGORITHMS[self.algorithm], "batch"):
            batched = sorted(name for name, cls in ALGORITHMS.items() if hasattr(cls, "batch"))
            raise ValueError(f"flow algorithm {self.algorithm!r} has no batched form; batch needs one of "
                             f"{', '.join(batched)}")
        if self.store not in STORES:
            raise ValueError(f"unknown store {self.store!r}; known: {', '.join(STORES)}")
        if self.jpeg not in JPEG_ENCODERS:
            raise ValueError(f"unknown JPEG encoder {self.jpeg!r}; known: {', '.join(JPEG_ENCODERS)}")

    def flow_threads(self, workers: int = 1) -> int:
        """Threads computing flow in each of ``workers`` workers: 1 for solvers that parallelise inside."""
        if not ALGORITHMS[self.algorithm].parallel_copies:
            return 1
        return self.threads or max(1, usable_cores() // workers)

    def create_algorithms(self, workers: int = 1) -> list[FlowAlgorithm]:
        """One algorithm instance per flow thread."""
        return [create_algorithm(self.algorithm, **self.params) for _ in range(self.flow_threads(workers))]


def open_video(path: Path | str, config: ExtractionConfig, gray: bool = True, rgb: bool = False) -> VideoFrames:
    """The video's sampled, resized frames, as the extraction reads them (with ``config.decoder``)."""
    return DECODERS[config.decoder](Path(path), config.short_side, config.step, gray=gray, rgb=rgb)
