"""``VideoDataModule``: one LightningDataModule over annotations -> index -> VideoDataset.

A dataset is an ``AnnotationSource`` (``datamodules/annotations/<name>.py``: classes,
splits, records, which split each stage reads, whether a horizontal flip keeps the
label); the DataModule takes one as ``annotations`` and is otherwise the same for every
dataset. In a config::

    data:
      class_path: datamodules.VideoDataModule
      init_args:
        annotations:
          class_path: datamodules.annotations.UCF101
          init_args: {annotation_dir: data/ucf101/ucfTrainTestlist, split: 1}
        video_root: data/ucf101/UCF-101

What the network expects (normalisation, 2L channels, T frames, crop size) comes from its
``InputSpec``: passed as ``rgb_spec`` / ``flow_spec``, set with ``set_input_specs``, or
adopted in ``setup`` from ``trainer.lightning_module.input_specs`` (a ``{"rgb": spec,
"flow": spec}`` mapping) when the LightningModule has one. Otherwise defaults follow the
modality (``datamodules.modality.default_specs``) built from ``num_fields``, ``frames``
and ``crop_size``. A network spec wins over ``num_fields`` and ``frames``; an explicit
``crop_size`` overrides its size.

Bad settings fail in ``__init__``, before a model is built, with one line naming the
setting: a root the modality reads, an annotation folder or file that does not exist, a
UCF-101/HMDB-51 ``split`` outside 1-3. The index is built in ``prepare_data`` (local rank 0
only; Lightning holds the other ranks at a barrier until it is done), so their ``setup``
just loads it from the cache.

Validation. The source says which split each stage reads (``stage_split``). The
two-stream paper has no validation split: UCF-101 and HMDB-51 validate on the test
split, one centre view per video (no 25x10); Kinetics on its val CSV; lists on
``val_list`` (else ``test_list``); Something-Something v2 validates and tests on its
validation set.

Distributed evaluation. Test and predict loaders shard with
``UnpaddedDistributedSampler`` when ``torch.distributed`` is initialised, so every video
is scored exactly once. Lightning (``use_distributed_sampler``, on by default) keeps a
sampler only if it is a ``torch.utils.data.DistributedSampler``; any other sampler it
wraps in its own padding one, sharding a second time. Training and validation use
Lightning's default sampler (padding is harmless there).

uint8 to the device. Loaders give uint8 batches (``datamodules.batch``); this module's
``on_after_batch_transfer`` finishes them on the device (float conversion, the flow's
dequantization, normalisation) with the networks' InputSpecs, and makes test keys
``TestViews`` that the LightningModule's chunked forward cuts into crops. A loader used
outside Lightning finishes its batches with ``dataset.finish(batch)``.

SVM fusion (``TwoStreamClassifier``) fits on per-video scores of the training videos;
``svm_train_dataloader`` gives them as test batches (views axis, sharded like the test
loader), with fewer views than the test protocol to keep it cheap; ``test_dataloader``
appends it (dataloader_idx 1) for a model whose ``extra_test_loaders`` names it.
"""

from __future__ import annotations

from collections.abc import Mapping
from functools import cached_property
from pathlib import Path
from typing import Literal, get_args

import pytorch_lightning as pl
import torch
import torch.distributed as dist
from torch.utils.data import ConcatDataset, DataLoader, Dataset

from datamodules.annotations.source import AnnotationSource, require_path
from datamodules.batch import collate_flat, collate_test, finish_batch, input_dtype
from datamodules.datasets import VideoDataset, check_bidirectional
from datamodules.decoding import create_reader
from datamodules.distributed import UnpaddedDistributedSampler
from datamodules.index import VideoIndex, build_index
from datamodules.modality import (
    MODALITIES,
    Modality,
    check_modality,
    infer_modality,
    is_clip,
    modality_keys,
    resolve_specs,
)
from datamodules.sampling import TEST_CLIPS, TEST_POSITIONS, Sampling, Stage
from datamodules.transforms import Augment, TestCrops
from flow.layout import NAMED_LAYOUTS
from flow.packed import open_flow_store
from models.input_spec import InputSpec

Split = Literal["train", "val", "test"]
Decoder = Literal["auto", "decord", "torchcodec", "torchcodec_cuda", "rawframes"]


class VideoDataModule(pl.LightningDataModule):
    """Train, val, test and predict loaders of one annotated video dataset.

    Args:
        annotations: the dataset's annotation files (``datamodules.annotations``: UCF101,
            HMDB51, Kinetics, ListFiles, SSv2), which give the classes and the records
            of each stage.
        video_root: folder the annotated video paths are relative to.
        frames_root: one folder per video id with flow fields (and RGB frames for the
            rawframes decoder) and meta.json; required for flow modalities and rawframes.
        modality: rgb, flow, two_stream (2D streams) or rgb_clip, flow_clip,
            two_stream_clip (3D networks); None: what the model's networks read (their
            InputSpecs: which keys, 2D or 3D), taken when the Trainer attaches the model, so a
            config names the modality once, on its networks.
        num_fields: flow fields L per 2D stack (2L channels); a flow InputSpec overrides it.
        frames: frames T per 3D clip; an InputSpec overrides it.
        stride: frames between the frames of a 3D clip.
        crop_size: square crop side; None: the network's declared size (224 in the papers).
            A value overrides the network's (fine for the adaptively pooled networks).
        short_side: frames and flow are resized so their shorter side has this length
            before cropping (the flow extractor's default is the same 256, so flow is
            usually stored at size); None keeps the stored size.
        multiscale_crop: training crops by TSN's multi-scale corner crop, not a random crop.
        flip: random horizontal flips in training (and mirrored test crops may be asked
            for); None: as the annotations say (off where a flip changes the label, e.g.
            Something-Something's "from left to right").
        flow_mean_subtraction: subtract each flow field's mean vector (camera motion);
            None: on for 2D stacks (two-stream paper), off for 3D clips (I3D).
        bidirectional_flow: 2D stacks (flow, two_stream) of L/2 backward and L/2 forward
            fields around frame tau (two-stream paper), still 2L channels ordered x of the
            fields in time order (backward first), then y likewise; the RGB frame is tau.
            Needs an even L and flow extracted with ``--backward``: setup fails naming the
            videos whose meta.json says they have none.
        test_positions: 2D test positions equally spaced over the video (paper: 25).
        test_crops: crops per test position or clip: ten (corners, centre, their flips),
            five (corners, centre), three (along the long side) or centre; None: ten for
            2D (five without flips), three for 3D.
        test_clips: 3D test clips per video.
        whole_video_test: 3D test on the whole video as one clip (I3D); needs test_batch_size 1.
        svm_positions: positions (2D) or clips (3D) per training video that
            ``svm_train_dataloader`` scores for SVM fusion; never the whole video. The paper
            does not say how it scored the SVM's training videos; the SVM only needs
            per-video scores, so fewer views than the test protocol keep it cheap.
        svm_crops: crops per SVM position or clip: centre, three, five or ten.
        clips_per_video: training samples (clips, frames or stacks, each with its own position,
            crop and flip) drawn from one decode of a video (PySlowFast's ``NUM_SAMPLE``): a
            training batch holds batch_size x clips_per_video samples, at one decode per video.
        batch_size: videos per training and validation batch.
        test_batch_size: videos per test and predict batch (each carries all its views).
        num_workers: DataLoader worker processes.
        pin_memory: page-locked batches for faster host-to-GPU copies.
        persistent_workers: keep workers between epochs (their failure counts persist too).
        decoder: RGB source: decord or torchcodec on the videos, auto (torchcodec where it
            imports, it measured faster; else decord), torchcodec_cuda (NVDEC; workers are
            spawned, not forked), or rawframes (img_*.jpg under frames_root).
        cache_dir: where the video index is cached; None: ``<frames_root or video_root>/.index_cache``.
        max_failure_rate: share of unreadable training videos tolerated (replaced by the
            next video, logged) before an error names them; counted per worker.
        seed: seeds shuffling and the workers' seeds; None: from the global seed
            (``seed_everything``).
        flow_layout: file names and start index of flow folders without meta.json
            (folders with one say their own): ours (``flow_x_00001.jpg``), denseflow
            (0-based) or mmaction2 (``x_00001.jpg``).
        rgb_spec: the RGB network's InputSpec; None: from the model or the modality.
        flow_spec: the flow network's InputSpec; None: from the model or the modality.
    """

    def __init__(
        self,
        annotations: AnnotationSource,
        video_root: str,
        frames_root: str | None = None,
        modality: Modality | None = None,
        num_fields: int = 10,
        frames: int = 64,
        stride: int = 1,
        crop_size: int | None = None,
        short_side: int | None = 256,
        multiscale_crop: bool = False,
        flip: bool | None = None,
        flow_mean_subtraction: bool | None = None,
        bidirectional_flow: bool = False,
        test_positions: int = TEST_POSITIONS,
        test_crops: TestCrops | None = None,
        test_clips: int = TEST_CLIPS,
        whole_video_test: bool = False,
        svm_positions: int = 5,
        svm_crops: TestCrops = "centre",
        clips_per_video: int = 1,
        batch_size: int = 32,
        test_batch_size: int = 1,
        num_workers: int = 4,
        pin_memory: bool = True,
        persistent_workers: bool = False,
        decoder: Decoder = "auto",
        cache_dir: str | None = None,
        max_failure_rate: float = 0.05,
        seed: int | None = None,
        flow_layout: Literal["ours", "denseflow", "mmaction2"] = "ours",
        rgb_spec: InputSpec | None = None,
        flow_spec: InputSpec | None = None,
    ):
        super().__init__()
        if not isinstance(annotations, AnnotationSource):
            raise TypeError(f"annotations: expected an AnnotationSource (datamodules.annotations.UCF101, ...), "
                            f"got {type(annotations).__name__}")
        if svm_positions < 1:
            raise ValueError(f"svm_positions must be >= 1, got {svm_positions}")
        if svm_crops not in get_args(TestCrops):
            raise ValueError(f"svm_crops must be one of {get_args(TestCrops)}, got {svm_crops!r}")
        if whole_video_test and test_batch_size != 1:
            raise ValueError("whole_video_test gives clips of different lengths: set test_batch_size to 1")
        self.video_root, self.frames_root = video_root, frames_root
        if flow_layout not in NAMED_LAYOUTS:
            raise ValueError(f"flow_layout must be one of {sorted(NAMED_LAYOUTS)}, got {flow_layout!r}")
        self.flow_layout = NAMED_LAYOUTS[flow_layout]
        self.num_fields, self.frames, self.crop_size = num_fields, frames, crop_size
        self.short_side, self.multiscale_crop, self.flow_mean_subtraction = short_side, multiscale_crop, flow_mean_subtraction
        self.annotations = annotations
        self.flip = annotations.mirrorable if flip is None else flip
        self.decoder, self.given_test_crops = decoder, test_crops
        self.test_crops: TestCrops | None = test_crops  # with the modality: its default where None
        for setting, crops in (("test_crops", test_crops), ("svm_crops", svm_crops)):
            if crops == "ten" and not self.flip:
                raise ValueError(f"{setting}: 'ten' mirrors five of its crops, but flip is off (the labels of "
                                 f"{type(annotations).__name__} name directions): use five, three or centre")
        self.sampling = Sampling(test_positions, test_clips, stride, whole_video_test)
        self.svm_sampling = Sampling(svm_positions, svm_positions, stride, whole_video=False)
        self.svm_crops = svm_crops
        if clips_per_video < 1:
            raise ValueError(f"clips_per_video must be >= 1, got {clips_per_video}")
        self.clips_per_video = clips_per_video
        self.batch_size, self.test_batch_size = batch_size, test_batch_size
        self.num_workers, self.pin_memory, self.persistent_workers = num_workers, pin_memory, persistent_workers
        self.cache_dir = cache_dir
        self.max_failure_rate, self.seed = max_failure_rate, seed
        self.bidirectional_flow = bidirectional_flow
        self._indices: dict[Split, VideoIndex] = {}
        self.datasets: dict[str, VideoDataset] = {}
        for setting, root in (("video_root", video_root), ("frames_root", frames_root)):
            if root is not None and Path(root).exists():  # wrong whatever the modality; missing ones maybe not
                require_path(setting, root, folder=True)
        given = {"rgb": rgb_spec, "flow": flow_spec}
        self.modality: str | None = None
        self.keys: tuple[str, ...] = ()
        self.input_specs: dict[str, InputSpec] = {key: spec for key, spec in given.items() if spec is not None}
        if modality is not None or self.input_specs:
            self._adopt_modality(modality or infer_modality(given))

    def _adopt_modality(self, modality: str) -> None:
        """Check and take the modality (given, or inferred from the networks' InputSpecs)."""
        check_modality(modality)
        keys = modality_keys(modality)
        if self.frames_root is None and ("flow" in keys or self.decoder == "rawframes"):
            raise ValueError(f"modality {modality!r} with decoder {self.decoder!r} needs frames_root")
        # Only the roots this modality reads: flow-only training needs no videos, and an RGB
        # run may name a frames root whose flow is still being extracted.
        require_path("video_root", self.video_root if "rgb" in keys and self.decoder != "rawframes" else None,
                     folder=True)
        require_path("frames_root", self.frames_root if "flow" in keys or self.decoder == "rawframes" else None,
                     folder=True)
        self.modality, self.keys = modality, keys
        self.test_crops = self.given_test_crops or ("three" if is_clip(modality) else "ten" if self.flip else "five")
        self.input_specs = resolve_specs(modality, self.input_specs, self.num_fields, self.frames, self.crop_size)
        if self.bidirectional_flow:  # now, before a model is built; a network's spec is checked at setup
            check_bidirectional(modality, self.input_specs)

    # Classes and specs.

    @cached_property
    def classes(self) -> list[str]:
        """Class names in label order (label k is ``classes[k]``), e.g. for the names in reports;
        read from the annotation files alone, so available right after ``__init__``."""
        return self.annotations.classes()

    @property
    def num_classes(self) -> int:
        """From the class list alone, so LightningCLI can link it into the model right after
        ``__init__`` (before ``prepare_data``/``setup``)."""
        return len(self.classes)

    def set_input_specs(self, specs: Mapping[str, InputSpec]) -> None:
        """Take the networks' InputSpecs (keys ``rgb``/``flow``) for the modality's keys; without a
        modality yet, the one they read (``infer_modality``)."""
        if self.modality is None:
            self.input_specs = {key: spec for key, spec in specs.items() if spec is not None}
            self._adopt_modality(infer_modality(specs))
            self.datasets.clear()
            return
        declared = {key for key, spec in specs.items() if spec is not None}
        if declared - set(self.keys):
            # Else a network reading a key the data does not give fails at the first step,
            # after the index build (hours at Kinetics scale).
            raise ValueError(f"data modality {self.modality!r} gives {sorted(self.keys)}, but the networks read "
                             f"{sorted(declared)}: leave modality out (it follows the networks) or make them agree")
        given = {**self.input_specs, **specs}
        self.input_specs = resolve_specs(self.modality, given, self.num_fields, self.frames, self.crop_size)
        self.datasets.clear()  # built with the old specs

    # Index and datasets.

    def index(self, split: Split) -> VideoIndex:
        """The usable videos of ``split`` (cached on disk by ``build_index``)."""
        if self.modality is None:
            # Which videos are usable depends on what the modality reads (videos, flow).
            raise ValueError("data modality: not known yet; set it, or attach the model first (its networks' "
                             "input_specs say it: set_input_specs)")
        if split not in self._indices:
            self._indices[split] = build_index(
                self.annotations.records(self.annotations.stage_split(split)), self.video_root, self.frames_root,
                needs_video="rgb" in self.keys and self.decoder != "rawframes",
                needs_flow="flow" in self.keys, cache_dir=self.cache_dir, layout=self.flow_layout,
            )  # fmt: skip
        return self._indices[split]

    def make_dataset(self, split: Split, tag: int | None = None) -> VideoDataset:
        """The dataset of ``split``; val samples one centre view, test all test views."""
        return self._make(split, split, self.sampling, self.test_crops, tag)

    def make_svm_dataset(self) -> VideoDataset:
        """The training videos under the test protocol with the SVM's views: ``svm_positions``
        positions (2D) or clips (3D) x ``svm_crops``; ``index`` is the position in this dataset."""
        return self._make("train", "test", self.svm_sampling, self.svm_crops, None)

    def _make(self, split: Split, stage: Stage, sampling: Sampling, crops: TestCrops, tag: int | None) -> VideoDataset:
        """The videos of ``split`` sampled and augmented as in ``stage``."""
        store = open_flow_store(self.frames_root, self.flow_layout) if self.frames_root is not None else None
        reader = None
        if "rgb" in self.keys:
            # Resizing happens once, in Augment, where the flow's scale is tracked too.
            reader = create_reader("rawframes", store=store) if self.decoder == "rawframes" else create_reader(self.decoder)
        augment = Augment(stage, self.input_specs, self.short_side, self.multiscale_crop, flip=self.flip,
                          test_crops=crops, subtract_flow_mean=self.flow_mean_subtraction)
        return VideoDataset(self.index(split), self.modality, stage, augment, reader, store, sampling,
                            self.max_failure_rate, tag, self.bidirectional_flow,
                            clips_per_video=self.clips_per_video if stage == "train" else 1)

    @property
    def test_video_ids(self) -> list[str]:
        """The test dataset's video ids in its order: a test sample's ``index`` i is video
        ``test_video_ids[i]`` (what names the rows of the per-video score file)."""
        return list(self.index("test").video_ids)

    @property
    def train_video_ids(self) -> list[str]:
        """The training videos' ids in dataset order (names the SVM-fusion training scores)."""
        return list(self.index("train").video_ids)

    def adopt_model_specs(self) -> None:
        """The attached LightningModule's ``input_specs`` (the networks say what they read);
        without a modality and without a model to tell it, a clear error."""
        model_specs = getattr(self.trainer.lightning_module, "input_specs", None) if self.trainer else None
        if model_specs is not None:
            self.set_input_specs(model_specs)
        if self.modality is None:
            raise ValueError("data modality: not set, and no model's input_specs to infer it from; set it "
                             f"(one of {', '.join(MODALITIES)}) or attach a model whose networks declare input_spec")

    def prepare_data(self) -> None:
        # Lightning calls this on local rank 0 only, and holds the other ranks at a barrier
        # before ``setup``: the slow build (stats, frame-count probes) happens once, and the
        # other ranks' ``index`` calls load the cache it wrote.
        if self.modality is None:
            self.adopt_model_specs()
        for split in ("train", "val", "test"):
            self.index(split)

    def setup(self, stage: str) -> None:
        self.adopt_model_specs()
        splits = {"fit": ("train", "val"), "validate": ("val",), "test": ("test",), "predict": ("test",)}[stage]
        for split in splits:
            self._dataset(split)

    # Loaders.

    def loader(self, dataset: Dataset, split: Split) -> DataLoader:
        """A DataLoader with this module's settings; test batches shard without padding."""
        distributed = dist.is_available() and dist.is_initialized()
        sampler = UnpaddedDistributedSampler(dataset) if split == "test" and distributed else None
        generator = torch.Generator().manual_seed(self.seed) if self.seed is not None else None
        return DataLoader(
            dataset,
            batch_size=self.test_batch_size if split == "test" else self.batch_size,
            shuffle=split == "train",
            sampler=sampler,
            num_workers=self.num_workers,
            pin_memory=self.pin_memory,
            persistent_workers=self.persistent_workers and self.num_workers > 0,
            drop_last=split == "train",
            generator=generator,
            collate_fn={"test": collate_test, "train": collate_flat}.get(split),
            # A CUDA decoder cannot run in workers forked after CUDA started (the model is on the GPU).
            multiprocessing_context=self._worker_start_method(dataset) if self.num_workers > 0 else None,
        )

    @staticmethod
    def _worker_start_method(dataset: Dataset) -> str | None:
        datasets = dataset.datasets if isinstance(dataset, ConcatDataset) else [dataset]
        methods = {getattr(getattr(each, "reader", None), "worker_start_method", None) for each in datasets}
        return "spawn" if "spawn" in methods else None

    def on_after_batch_transfer(self, batch: dict, dataloader_idx: int) -> dict:
        """uint8 batches, now on the device, to the networks' inputs (module docstring)."""
        return finish_batch(batch, self.input_specs, self.flow_mean_subtraction, input_dtype(self.trainer))

    def _dataset(self, name: str) -> VideoDataset:
        """The dataset of a split, or ``svm_train``; built once (until the specs change)."""
        if name not in self.datasets:
            self.datasets[name] = self.make_svm_dataset() if name == "svm_train" else self.make_dataset(name)
        return self.datasets[name]

    def train_dataloader(self) -> DataLoader:
        return self.loader(self._dataset("train"), "train")

    def val_dataloader(self) -> DataLoader:
        return self.loader(self._dataset("val"), "val")

    def test_dataloader(self) -> DataLoader | list[DataLoader]:
        """The test videos; then, as dataloader_idx 1, 2, ..., the loaders the model's test also
        reads (its ``extra_test_loaders``, e.g. ``("svm_train",)``: ``svm_train_dataloader()``),
        so that Lightning's precision, device placement and sampler apply to them alike."""
        test = self.loader(self._dataset("test"), "test")
        extra = getattr(self.trainer.lightning_module, "extra_test_loaders", ()) if self.trainer else ()
        return [test, *(getattr(self, f"{name}_dataloader")() for name in extra)] if extra else test

    def predict_dataloader(self) -> DataLoader:
        return self.loader(self._dataset("test"), "test")

    def svm_train_dataloader(self) -> DataLoader:
        """Test batches (views axis V = ``svm_positions`` x crops of ``svm_crops``) over the
        training videos, for ``TwoStreamClassifier``'s SVM fusion: in order, sharded without
        padding under DDP like the test loader, so each video is scored exactly once."""
        return self.loader(self._dataset("svm_train"), "test")
