"""The parts of a ``VideoDataModule``'s configuration, each a block of a config's ``data:``.

jsonargparse reads each dataclass as a nested block (``data.init_args.loader.batch_size``)
and shows its ``Args:`` in ``--help``. What the input *is* (modality, channels, L, T, crop
size, normalisation) is none of these: it comes from the networks' InputSpecs
(``VideoDataModule.set_input_specs``). Training augmentation is
``datamodules.transforms.Augmentation``, beside the code that applies it.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal, get_args

from datamodules.sampling import TEST_CLIPS, TEST_POSITIONS
from datamodules.trajectory import STACKINGS
from datamodules.transforms import TestCrops

Decoder = Literal["auto", "decord", "torchcodec", "torchcodec_cuda", "rawframes"]
FlowLayoutName = Literal["ours", "denseflow", "mmaction2"]
Stacking = Literal["optical_flow", "trajectory"]


@dataclass(frozen=True)
class Roots:
    """Where a dataset's files are.

    Args:
        video_root: folder the annotated video paths are relative to.
        frames_root: one folder per video id with flow fields (and RGB frames for the
            rawframes decoder) and meta.json; required when a network reads flow, and for rawframes.
        flow_layout: file names and start index of flow folders without meta.json
            (folders with one say their own): ours (``flow_x_00001.jpg``), denseflow
            (0-based) or mmaction2 (``x_00001.jpg``).
        cache_dir: where the video index is cached; None: ``<frames_root or video_root>/.index_cache``.
    """

    video_root: str
    frames_root: str | None = None
    flow_layout: FlowLayoutName = "ours"
    cache_dir: str | None = None


@dataclass(frozen=True)
class FrameSampling:
    """Which frames and flow fields make one sample (the counts, L and T, are the networks').

    Args:
        stride: frames between the frames of a 3D clip.
        bidirectional_flow: 2D stacks of L/2 backward and L/2 forward fields around frame
            tau (two-stream paper), still 2L channels ordered x of the fields in time order
            (backward first), then y likewise; the RGB frame is tau. Needs a 2D flow network
            with an even L and flow extracted with ``--backward``: setup fails naming the
            videos whose meta.json says they have none.
        clips_per_video: training samples (clips, frames or stacks, each with its own
            position, crop and flip) drawn from one decode of a video (PySlowFast's
            ``NUM_SAMPLE``): a training batch holds batch_size x clips_per_video samples.
        stacking: how a 2D flow stack reads its L fields (two-stream paper, section 3.1):
            optical_flow, every field at the output pixel; trajectory, each field at the
            point the preceding fields moved the pixel to (``datamodules.trajectory``; points
            leaving the frame are clamped to its border). Trajectory stacking runs on the
            device from the whole field, so the workers ship flow uncropped with its crop box.
            2D flow networks only.
    """

    stride: int = 1
    bidirectional_flow: bool = False
    clips_per_video: int = 1
    stacking: Stacking = "optical_flow"

    def __post_init__(self) -> None:
        if self.stacking not in STACKINGS:
            raise ValueError(f"sampling.stacking must be one of {', '.join(STACKINGS)}, got {self.stacking!r}")
        for name in ("stride", "clips_per_video"):
            if getattr(self, name) < 1:
                raise ValueError(f"sampling.{name} must be >= 1, got {getattr(self, name)}")


@dataclass(frozen=True)
class EvalProtocol:
    """The test views per video, and the SVM-fusion training views.

    Args:
        positions: 2D test positions equally spaced over the video (paper: 25).
        crops: crops per test position or clip: ten (corners, centre, their flips), five
            (corners, centre), three (along the long side) or centre; None: ten for 2D
            networks (five without flips), three for 3D ones.
        clips: 3D test clips per video.
        whole_video: 3D test on the whole video as one clip (I3D); needs loader.test_batch_size 1.
        svm_positions: positions (2D) or clips (3D) per training video that
            ``svm_train_dataloader`` scores for SVM fusion; never the whole video. The paper
            does not say how it scored the SVM's training videos; the SVM only needs per-video
            scores, so fewer views than the test protocol keep it cheap.
        svm_crops: crops per SVM position or clip: centre, three, five or ten.
    """

    positions: int = TEST_POSITIONS
    crops: TestCrops | None = None
    clips: int = TEST_CLIPS
    whole_video: bool = False
    svm_positions: int = 5
    svm_crops: TestCrops = "centre"

    def __post_init__(self) -> None:
        for name in ("positions", "clips", "svm_positions"):
            if getattr(self, name) < 1:
                raise ValueError(f"test.{name} must be >= 1, got {getattr(self, name)}")
        for name in ("crops", "svm_crops"):
            value = getattr(self, name)
            if value is not None and value not in get_args(TestCrops):
                raise ValueError(f"test.{name} must be one of {get_args(TestCrops)}, got {value!r}")


@dataclass(frozen=True)
class LoaderSettings:
    """How batches are read: sizes, workers, decoder, seed, failure tolerance.

    Args:
        batch_size: videos per training and validation batch.
        test_batch_size: videos per test and predict batch (each carries all its views).
        num_workers: DataLoader worker processes.
        pin_memory: page-locked batches for faster host-to-GPU copies.
        persistent_workers: keep workers between epochs (their failure counts persist too).
        decoder: RGB source: decord or torchcodec on the videos, auto (torchcodec where it
            imports, it measured faster; else decord), torchcodec_cuda (NVDEC; workers are
            spawned, not forked), or rawframes (img_*.jpg under frames_root).
        seed: seeds shuffling and the workers' seeds; None: from the global seed
            (``seed_everything``).
        max_failure_rate: share of unreadable training videos tolerated (replaced by the
            next video, logged) before an error names them; counted per worker.
    """

    batch_size: int = 32
    test_batch_size: int = 1
    num_workers: int = 4
    pin_memory: bool = True
    persistent_workers: bool = False
    decoder: Decoder = "auto"
    seed: int | None = None
    max_failure_rate: float = 0.05

    def __post_init__(self) -> None:
        if self.decoder not in get_args(Decoder):
            raise ValueError(f"loader.decoder must be one of {get_args(Decoder)}, got {self.decoder!r}")
