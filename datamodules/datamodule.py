"""LightningDataModules: one base over annotations -> index -> VideoDataset, one subclass per
annotation format (UCF-101, HMDB-51, Kinetics, mmaction2 lists).

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

Validation. The two-stream paper has no validation split: UCF-101 and HMDB-51 validate
on the test split, one centre view per video (no 25x10); Kinetics on its val CSV; lists
on ``val_list`` (else ``test_list``).

Distributed evaluation. Test and predict loaders shard with
``UnpaddedDistributedSampler`` when ``torch.distributed`` is initialised, so every video
is scored exactly once. Lightning (``use_distributed_sampler``, on by default) keeps a
sampler only if it is a ``torch.utils.data.DistributedSampler``; any other sampler it
wraps in its own padding one, sharding a second time. Training and validation use
Lightning's default sampler (padding is harmless there).

SVM fusion (``TwoStreamClassifier``) fits on per-video scores of the training videos;
``svm_train_dataloader`` gives them as test batches (views axis, sharded like the test
loader), with fewer views than the test protocol to keep it cheap; ``test_dataloader``
appends it (dataloader_idx 1) for a model whose ``extra_test_loaders`` names it.
"""

from __future__ import annotations

from abc import abstractmethod
from collections.abc import Mapping
from dataclasses import replace
from functools import cached_property
from pathlib import Path
from typing import Literal, get_args

import pytorch_lightning as pl
import torch
import torch.distributed as dist
from torch.utils.data import DataLoader, Dataset

from datamodules.annotations import (
    Annotations,
    read_class_index,
    read_hmdb51,
    read_kinetics,
    read_list_file,
    read_ucf101,
)
from datamodules.annotations.kinetics import VideoLayout
from datamodules.annotations.records import read_lines
from datamodules.datasets import Sampling, VideoDataset, check_bidirectional
from datamodules.decoding import create_reader
from datamodules.distributed import UnpaddedDistributedSampler
from datamodules.index import VideoIndex, build_index
from datamodules.modality import (
    Modality,
    check_modality,
    is_clip,
    modality_keys,
    resolve_specs,
)
from datamodules.sampling import TEST_CLIPS, TEST_POSITIONS, Stage
from datamodules.transforms import Augment, TestCrops
from flow.layout import NAMED_LAYOUTS
from flow.store import FolderFlowStore
from models.input_spec import InputSpec

Split = Literal["train", "val", "test"]
Decoder = Literal["auto", "decord", "torchcodec", "rawframes"]


def require_path(setting: str, path: str | Path | None, folder: bool = False) -> None:
    """Fail with one line naming ``setting`` when a given ``path`` is absent or of the wrong kind.

    Args:
        setting: the init argument the path came from, as the user wrote it in the config.
        path: the path to check; None (an optional setting left out) passes.
        folder: a folder is expected, else a file.
    """
    if path is None:
        return
    if not Path(path).exists():
        raise FileNotFoundError(f"{setting}: {path} does not exist")
    if folder and not Path(path).is_dir():
        raise NotADirectoryError(f"{setting}: {path} is not a folder")
    if not folder and Path(path).is_dir():
        raise IsADirectoryError(f"{setting}: {path} is a folder, not a file")


def require_split(split: int) -> None:
    """The official splits of UCF-101 and HMDB-51 are 1, 2 and 3."""
    if split not in (1, 2, 3):
        raise ValueError(f"split: the official splits are 1, 2 and 3, got {split}")


class VideoDataModule(pl.LightningDataModule):
    """Train, val, test and predict loaders of one annotated video dataset.

    Subclasses say where the class list and the train/val/test records come from
    (``read_classes``, ``read_annotations``); everything else is shared.

    Args:
        video_root: folder the annotated video paths are relative to.
        frames_root: one folder per video id with flow fields (and RGB frames for the
            rawframes decoder) and meta.json; required for flow modalities and rawframes.
        modality: rgb, flow, two_stream (2D streams) or rgb_clip, flow_clip,
            two_stream_clip (3D networks).
        num_fields: flow fields L per 2D stack (2L channels); a flow InputSpec overrides it.
        frames: frames T per 3D clip; an InputSpec overrides it.
        stride: frames between the frames of a 3D clip.
        crop_size: square crop side; None: the network's declared size (224 in the papers).
            A value overrides the network's (fine for the adaptively pooled networks).
        short_side: frames and flow are resized so their shorter side has this length
            before cropping (the flow extractor's default is the same 256, so flow is
            usually stored at size); None keeps the stored size.
        multiscale_crop: training crops by TSN's multi-scale corner crop, not a random crop.
        flow_mean_subtraction: subtract each flow field's mean vector (camera motion);
            None: on for 2D stacks (two-stream paper), off for 3D clips (I3D).
        bidirectional_flow: 2D stacks (flow, two_stream) of L/2 backward and L/2 forward
            fields around frame tau (two-stream paper), still 2L channels ordered x of the
            fields in time order (backward first), then y likewise; the RGB frame is tau.
            Needs an even L and flow extracted with ``--backward``: setup fails naming the
            videos whose meta.json says they have none.
        test_positions: 2D test positions equally spaced over the video (paper: 25).
        test_crops: crops per test position or clip: ten (corners, centre, their flips),
            three (along the long side) or centre; None: ten for 2D, three for 3D.
        test_clips: 3D test clips per video.
        whole_video_test: 3D test on the whole video as one clip (I3D); needs test_batch_size 1.
        svm_positions: positions (2D) or clips (3D) per training video that
            ``svm_train_dataloader`` scores for SVM fusion; never the whole video. The paper
            does not say how it scored the SVM's training videos; the SVM only needs
            per-video scores, so fewer views than the test protocol keep it cheap.
        svm_crops: crops per SVM position or clip: centre, three or ten.
        batch_size: videos per training and validation batch.
        test_batch_size: videos per test and predict batch (each carries all its views).
        num_workers: DataLoader worker processes.
        pin_memory: page-locked batches for faster host-to-GPU copies.
        persistent_workers: keep workers between epochs (their failure counts persist too).
        decoder: RGB source: decord or torchcodec on the videos, auto (torchcodec where it
            imports, it measured faster; else decord), or rawframes (img_*.jpg under frames_root).
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
        video_root: str,
        frames_root: str | None = None,
        modality: Modality = "rgb",
        num_fields: int = 10,
        frames: int = 64,
        stride: int = 1,
        crop_size: int | None = None,
        short_side: int | None = 256,
        multiscale_crop: bool = False,
        flow_mean_subtraction: bool | None = None,
        bidirectional_flow: bool = False,
        test_positions: int = TEST_POSITIONS,
        test_crops: TestCrops | None = None,
        test_clips: int = TEST_CLIPS,
        whole_video_test: bool = False,
        svm_positions: int = 5,
        svm_crops: TestCrops = "centre",
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
        check_modality(modality)
        keys = modality_keys(modality)
        if frames_root is None and ("flow" in keys or decoder == "rawframes"):
            raise ValueError(f"modality {modality!r} with decoder {decoder!r} needs frames_root")
        # Only the roots this modality reads: flow-only training needs no videos, and an RGB
        # run may name a frames root whose flow is still being extracted.
        require_path("video_root", video_root if "rgb" in keys and decoder != "rawframes" else None, folder=True)
        require_path("frames_root", frames_root if "flow" in keys or decoder == "rawframes" else None, folder=True)
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
        self.modality, self.keys = modality, keys
        self.num_fields, self.frames, self.crop_size = num_fields, frames, crop_size
        self.short_side, self.multiscale_crop, self.flow_mean_subtraction = short_side, multiscale_crop, flow_mean_subtraction
        self.test_crops = test_crops or ("three" if is_clip(modality) else "ten")
        self.sampling = Sampling(test_positions, test_clips, stride, whole_video_test)
        self.svm_sampling = Sampling(svm_positions, svm_positions, stride, whole_video=False)
        self.svm_crops = svm_crops
        self.batch_size, self.test_batch_size = batch_size, test_batch_size
        self.num_workers, self.pin_memory, self.persistent_workers = num_workers, pin_memory, persistent_workers
        self.decoder, self.cache_dir = decoder, cache_dir
        self.max_failure_rate, self.seed = max_failure_rate, seed
        self.input_specs = resolve_specs(modality, {"rgb": rgb_spec, "flow": flow_spec}, num_fields, frames, crop_size)
        if bidirectional_flow:  # now, before a model is built; a network's spec is checked at setup
            check_bidirectional(modality, self.input_specs)
        self.bidirectional_flow = bidirectional_flow
        self._indices: dict[Split, VideoIndex] = {}
        self.datasets: dict[str, VideoDataset] = {}

    # What a subclass supplies.

    @abstractmethod
    def read_classes(self) -> list[str]:
        """Class names in label order, read cheaply (no video is touched)."""

    @abstractmethod
    def read_annotations(self, split: Split) -> Annotations:
        """The records of ``split``; "val" may return the test records (see module docstring)."""

    # Classes and specs.

    @cached_property
    def classes(self) -> list[str]:
        """Class names in label order (label k is ``classes[k]``), e.g. for the names in reports;
        read from the annotation files alone, so available right after ``__init__``."""
        return self.read_classes()

    @property
    def num_classes(self) -> int:
        """From the class list alone, so LightningCLI can link it into the model right after
        ``__init__`` (before ``prepare_data``/``setup``)."""
        return len(self.classes)

    def set_input_specs(self, specs: Mapping[str, InputSpec]) -> None:
        """Take the networks' InputSpecs (keys ``rgb``/``flow``) for the modality's keys."""
        given = {**self.input_specs, **specs}
        self.input_specs = resolve_specs(self.modality, given, self.num_fields, self.frames, self.crop_size)
        self.datasets.clear()  # built with the old specs

    # Index and datasets.

    def index(self, split: Split) -> VideoIndex:
        """The usable videos of ``split`` (cached on disk by ``build_index``)."""
        if split not in self._indices:
            self._indices[split] = build_index(
                self.read_annotations(split), self.video_root, self.frames_root,
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
        store = FolderFlowStore(self.frames_root, self.flow_layout) if self.frames_root is not None else None
        reader = None
        if "rgb" in self.keys:
            # Resizing happens once, in Augment, where the flow's scale is tracked too.
            reader = create_reader("rawframes", store=store) if self.decoder == "rawframes" else create_reader(self.decoder)
        augment = Augment(stage, self.input_specs, self.short_side, self.multiscale_crop,
                          test_crops=crops, subtract_flow_mean=self.flow_mean_subtraction)
        return VideoDataset(self.index(split), self.modality, stage, augment, reader, store, sampling,
                            self.max_failure_rate, tag, self.bidirectional_flow)

    @property
    def test_video_ids(self) -> list[str]:
        """The test dataset's video ids in its order: a test sample's ``index`` i is video
        ``test_video_ids[i]`` (what names the rows of the per-video score file)."""
        return list(self.index("test").video_ids)

    @property
    def train_video_ids(self) -> list[str]:
        """The training videos' ids in dataset order (names the SVM-fusion training scores)."""
        return list(self.index("train").video_ids)

    def prepare_data(self) -> None:
        # Lightning calls this on local rank 0 only, and holds the other ranks at a barrier
        # before ``setup``: the slow build (stats, frame-count probes) happens once, and the
        # other ranks' ``index`` calls load the cache it wrote.
        for split in ("train", "val", "test"):
            self.index(split)

    def setup(self, stage: str) -> None:
        model_specs = getattr(self.trainer.lightning_module, "input_specs", None) if self.trainer else None
        if model_specs is not None:
            self.set_input_specs(model_specs)
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
        )

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


class UCF101DataModule(VideoDataModule):
    """UCF-101 with its official splits (``ucfTrainTestlist``); validates on the test split.

    Args:
        annotation_dir: folder with classInd.txt, trainlist0k.txt, testlist0k.txt.
        split: 1, 2 or 3.
    """

    def __init__(self, annotation_dir: str, split: int = 1, **kwargs):
        super().__init__(**kwargs)
        require_split(split)
        require_path("annotation_dir", annotation_dir, folder=True)
        for name in ("classInd.txt", f"trainlist{split:02d}.txt", f"testlist{split:02d}.txt"):
            require_path("annotation_dir", Path(annotation_dir) / name)
        self.annotation_dir, self.split = annotation_dir, split

    def read_classes(self) -> list[str]:
        return read_class_index(Path(self.annotation_dir) / "classInd.txt")

    def read_annotations(self, split: Split) -> Annotations:
        return read_ucf101(self.annotation_dir, self.split, "train" if split == "train" else "test")


class HMDB51DataModule(VideoDataModule):
    """HMDB-51 with its official splits (``testTrainMulti_7030_splits``); validates on the test split.

    Args:
        split_dir: folder with the ``<class>_test_split<k>.txt`` files.
        split: 1, 2 or 3.
    """

    def __init__(self, split_dir: str, split: int = 1, **kwargs):
        super().__init__(**kwargs)
        require_split(split)
        require_path("split_dir", split_dir, folder=True)
        self.split_dir, self.split = split_dir, split

    def read_classes(self) -> list[str]:
        return self.read_annotations("test").classes  # 51 small files: cheap

    def read_annotations(self, split: Split) -> Annotations:
        return read_hmdb51(self.split_dir, self.split, "train" if split == "train" else "test")


class KineticsDataModule(VideoDataModule):
    """Kinetics from its CSVs; validates and tests on ``val_csv`` unless ``test_csv`` is given.

    Args:
        train_csv: the train CSV (``label,youtube_id,time_start,time_end,split``).
        val_csv: the validation CSV.
        test_csv: a labelled test CSV; None: the validation CSV.
        label_map: class names one per line in label order (e.g. kinetics-i3d's
            label_map_400_i3d.txt); None: the sorted labels of train_csv.
        video_layout: clips under ``<split>/<label>/`` (split_label), flat, or auto (either).
    """

    def __init__(
        self,
        train_csv: str,
        val_csv: str,
        test_csv: str | None = None,
        label_map: str | None = None,
        video_layout: VideoLayout = "auto",
        **kwargs,
    ):
        super().__init__(**kwargs)
        for setting, path in (("train_csv", train_csv), ("val_csv", val_csv), ("test_csv", test_csv),
                              ("label_map", label_map)):
            require_path(setting, path)
        self.csvs = {"train": train_csv, "val": val_csv, "test": test_csv or val_csv}
        self.label_map, self.video_layout = label_map, video_layout

    def read_classes(self) -> list[str]:
        if self.label_map is not None:
            return [text for _, text in read_lines(self.label_map)]
        return read_kinetics(self.csvs["train"]).classes

    def read_annotations(self, split: Split) -> Annotations:
        annotations = read_kinetics(self.csvs[split], label_map=self.label_map, video_layout=self.video_layout)
        if annotations.classes == self.classes:
            return annotations
        # Without a label map each CSV's sorted labels would number classes on its own:
        # relabel by the train CSV's classes so that every split agrees.
        labels = {name: label for label, name in enumerate(self.classes)}
        unknown = sorted(set(annotations.classes) - set(labels))
        if unknown:
            raise ValueError(f"{self.csvs[split]} has classes absent from {self.csvs['train']}: {unknown[:5]}")
        records = [replace(r, label=labels[annotations.classes[r.label]]) if r.label >= 0 else r
                   for r in annotations.records]
        return Annotations(self.classes, records)


class ListDataModule(VideoDataModule):
    """mmaction2-style list files: "<video> <label>" or "<frame_dir> <num_frames> <label>".

    Args:
        train_list: the training list.
        val_list: the validation list; None: test_list.
        test_list: the test list; None: val_list.
        class_names: a file with one class name per line in label order; None: the
            classes are the label numbers of train_list.
        list_kind: video (paths to video files) or rawframes (frame folders under frames_root).
    """

    def __init__(
        self,
        train_list: str,
        val_list: str | None = None,
        test_list: str | None = None,
        class_names: str | None = None,
        list_kind: Literal["video", "rawframes"] = "video",
        **kwargs,
    ):
        super().__init__(**kwargs)
        if val_list is None and test_list is None:
            raise ValueError("give val_list, test_list or both")
        for setting, path in (("train_list", train_list), ("val_list", val_list), ("test_list", test_list),
                              ("class_names", class_names)):
            require_path(setting, path)
        self.lists = {"train": train_list, "val": val_list or test_list, "test": test_list or val_list}
        self.class_names, self.list_kind = class_names, list_kind

    def read_classes(self) -> list[str]:
        if self.class_names is not None:
            return [text for _, text in read_lines(self.class_names)]
        return read_list_file(self.lists["train"], self.list_kind).classes

    def read_annotations(self, split: Split) -> Annotations:
        return read_list_file(self.lists[split], self.list_kind, self.classes)
