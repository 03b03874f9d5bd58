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
        roots: {video_root: data/ucf101/UCF-101, frames_root: data/ucf101/flow}
        augment: {short_side: 256, multiscale_crop: true}
        test: {positions: 25, crops: ten}
        loader: {batch_size: 32, num_workers: 8}

The blocks are the parts in ``datamodules.settings`` (roots, sampling, test protocol,
loader) and ``datamodules.transforms.Augmentation``; each has its own ``Args:``.

What the input is (the modality: which keys, 2D or 3D; 2L channels, T frames, crop size,
normalisation) comes from the networks alone: their ``InputSpec`` mapping (``{"rgb": spec,
"flow": spec}``) given to ``set_input_specs``, which the CLI calls right after building the
model; ``setup`` calls it with ``trainer.lightning_module.input_specs`` when nothing did.
No data setting repeats it.

Bad settings fail with one line naming the setting: in ``__init__`` an annotation folder
or file that does not exist, a UCF-101/HMDB-51 ``split`` outside 1-3; in
``set_input_specs`` (still before the index is built) a root the networks' input reads.
The index is built in ``prepare_data`` (local rank 0 only; Lightning holds the other ranks
at a barrier until it is done), so their ``setup`` just loads it from the cache.

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
from dataclasses import replace
from functools import cached_property
from pathlib import Path
from typing import Literal

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
from datamodules.modality import infer_modality, is_clip, modality_keys
from datamodules.sampling import Sampling, Stage
from datamodules.settings import EvalProtocol, FrameSampling, LoaderSettings, Roots
from datamodules.trajectory import check_stacking
from datamodules.transforms import Augment, Augmentation, TestCrops
from flow.layout import NAMED_LAYOUTS
from flow.packed import open_flow_store
from models.input_spec import InputSpec

Split = Literal["train", "val", "test"]


def protocol_crops(protocol: EvalProtocol, modality: str, flip: bool) -> TestCrops:
    """The crops a test takes: ``test.crops``, else three for clips (3D), ten for 2D inputs (five
    where flips are off). Also what inference takes for a config's data (``inference.load``)."""
    return protocol.crops or ("three" if is_clip(modality) else "ten" if flip else "five")


class VideoDataModule(pl.LightningDataModule):
    """Train, val, test and predict loaders of one annotated video dataset.

    Args:
        annotations: the dataset's annotation files (``datamodules.annotations``: UCF101,
            HMDB51, Kinetics, ListFiles, SSv2), which give the classes and the records
            of each stage.
        roots: where the videos, the flow (and frames) and the index cache are.
        augment: the short-side resize, training crops and flips, flow mean subtraction.
        sampling: which frames and fields make a sample (3D stride, bi-directional flow
            stacks, training samples per decode).
        test: the test views per video (positions or clips x crops, whole video) and the
            SVM-fusion training views.
        loader: batch sizes, workers, decoder, seed, tolerated share of unreadable videos.
    """

    def __init__(
        self,
        annotations: AnnotationSource,
        roots: Roots,
        augment: Augmentation = Augmentation(),
        sampling: FrameSampling = FrameSampling(),
        test: EvalProtocol = EvalProtocol(),
        loader: LoaderSettings = LoaderSettings(),
    ):
        super().__init__()
        if not isinstance(annotations, AnnotationSource):
            raise TypeError(f"annotations: expected an AnnotationSource (datamodules.annotations.UCF101, ...), "
                            f"got {type(annotations).__name__}")
        if test.whole_video and loader.test_batch_size != 1:
            raise ValueError("test.whole_video gives clips of different lengths: set loader.test_batch_size to 1")
        if roots.flow_layout not in NAMED_LAYOUTS:
            raise ValueError(f"roots.flow_layout must be one of {sorted(NAMED_LAYOUTS)}, got {roots.flow_layout!r}")
        for setting in ("video_root", "frames_root"):
            root = getattr(roots, setting)
            if root is not None and Path(root).exists():  # wrong whatever the input; missing ones maybe not
                require_path(setting, root, folder=True)
        self.annotations, self.roots, self.loader_settings = annotations, roots, loader
        self.augment = replace(augment, flip=annotations.mirrorable if augment.flip is None else augment.flip)
        self.frame_sampling, self.protocol = sampling, test
        for setting, crops in (("test.crops", test.crops), ("test.svm_crops", test.svm_crops)):
            if crops == "ten" and not self.flip:
                raise ValueError(f"{setting}: 'ten' mirrors five of its crops, but flip is off (the labels of "
                                 f"{type(annotations).__name__} name directions): use five, three or centre")
        self.flow_layout = NAMED_LAYOUTS[roots.flow_layout]
        self.sampling = Sampling(test.positions, test.clips, sampling.stride, test.whole_video)
        self.svm_sampling = Sampling(test.svm_positions, test.svm_positions, sampling.stride, whole_video=False)
        # What the networks read, from set_input_specs: until then nothing that depends on it.
        self.modality: str | None = None
        self.keys: tuple[str, ...] = ()
        self.input_specs: dict[str, InputSpec] = {}
        self.test_crops: TestCrops | None = None
        self._indices: dict[Split, VideoIndex] = {}
        self.datasets: dict[str, VideoDataset] = {}

    @property
    def flip(self) -> bool:
        """Horizontal flips in training (the annotations' ``mirrorable`` unless ``augment.flip`` says)."""
        return bool(self.augment.flip)

    # Classes and what the networks read.

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

    def set_input_specs(self, specs: Mapping[str, InputSpec | None]) -> None:
        """Take what the networks read (their InputSpecs, keys ``rgb``/``flow``): the modality
        (which keys, 2D or 3D) and each key's channels, frames, crop size and normalisation.

        The one way the data learns its input; checks now, before any index is built, that the
        roots this input reads exist (flow-only training needs no videos, and an RGB run may
        name a frames root whose flow is still being extracted)."""
        given = {key: spec for key, spec in specs.items() if spec is not None}
        modality = infer_modality(given)
        keys = modality_keys(modality)
        decoder = self.loader_settings.decoder
        if self.roots.frames_root is None and ("flow" in keys or decoder == "rawframes"):
            raise ValueError(f"the networks read {modality!r} with decoder {decoder!r}: set roots.frames_root")
        require_path("video_root", self.roots.video_root if "rgb" in keys and decoder != "rawframes" else None,
                     folder=True)
        require_path("frames_root", self.roots.frames_root if "flow" in keys or decoder == "rawframes" else None,
                     folder=True)
        if self.frame_sampling.bidirectional_flow:
            check_bidirectional(modality, given)
        if "flow" in given:
            check_stacking(self.frame_sampling.stacking, given["flow"].dims)
        if modality != self.modality:
            self._indices.clear()  # which videos are usable depends on what the input reads
        self.modality, self.keys, self.input_specs = modality, keys, given
        self.test_crops = protocol_crops(self.protocol, modality, self.flip)
        self.datasets.clear()  # built with the old specs

    def _specs_from_model(self) -> None:
        """Where nothing set the input yet (pure-Python use), the attached model's ``input_specs``."""
        if self.modality is not None:
            return
        specs = getattr(self.trainer.lightning_module, "input_specs", None) if self.trainer else None
        if specs is None:
            raise ValueError("data input: not set, and no model's input_specs to take it from; attach a model whose "
                             "networks declare input_spec, or call set_input_specs")
        self.set_input_specs(specs)

    # Index and datasets.

    def index(self, split: Split) -> VideoIndex:
        """The usable videos of ``split`` (cached on disk by ``build_index``)."""
        if self.modality is None:
            # Which videos are usable depends on what the input reads (videos, flow).
            raise ValueError("data input: not known yet; the networks' input_specs say it (set_input_specs)")
        if split not in self._indices:
            self._indices[split] = build_index(
                self.annotations.records(self.annotations.stage_split(split)), self.roots.video_root,
                self.roots.frames_root, needs_video="rgb" in self.keys and self.loader_settings.decoder != "rawframes",
                needs_flow="flow" in self.keys, cache_dir=self.roots.cache_dir, layout=self.flow_layout,
            )  # fmt: skip
        return self._indices[split]

    def make_dataset(self, split: Split, tag: int | None = None) -> VideoDataset:
        """The dataset of ``split``; val samples one centre view, test all test views."""
        return self._make(split, split, self.sampling, self.test_crops, tag)

    def make_svm_dataset(self) -> VideoDataset:
        """The training videos under the test protocol with the SVM's views: ``test.svm_positions``
        positions (2D) or clips (3D) x ``test.svm_crops``; ``index`` is the position in this dataset."""
        return self._make("train", "test", self.svm_sampling, self.protocol.svm_crops, None)

    def _make(self, split: Split, stage: Stage, sampling: Sampling, crops: TestCrops | None,
              tag: int | None) -> VideoDataset:
        """The videos of ``split`` sampled and augmented as in ``stage``."""
        index = self.index(split)  # first: it says when the input is not known yet
        frames_root, decoder = self.roots.frames_root, self.loader_settings.decoder
        store = open_flow_store(frames_root, self.flow_layout) if frames_root is not None else None
        reader = None
        if "rgb" in self.keys:
            # Resizing happens once, in Augment, where the flow's scale is tracked too.
            reader = create_reader("rawframes", store=store) if decoder == "rawframes" else create_reader(decoder)
        augment = Augment(stage, self.input_specs, self.augment, test_crops=crops,
                          stacking=self.frame_sampling.stacking)
        return VideoDataset(index, self.modality, stage, augment, reader, store, sampling,
                            self.loader_settings.max_failure_rate, tag, self.frame_sampling.bidirectional_flow,
                            clips_per_video=self.frame_sampling.clips_per_video if stage == "train" else 1)

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
        self._specs_from_model()
        for split in ("train", "val", "test"):
            self.index(split)

    def setup(self, stage: str) -> None:
        self._specs_from_model()
        splits = {"fit": ("train", "val"), "validate": ("val",), "test": ("test",), "predict": ("test",)}[stage]
        for split in splits:
            self._dataset(split)

    # Loaders.

    def loader(self, dataset: Dataset, split: Split) -> DataLoader:
        """A DataLoader with this module's settings; test batches shard without padding."""
        settings = self.loader_settings
        distributed = dist.is_available() and dist.is_initialized()
        sampler = UnpaddedDistributedSampler(dataset) if split == "test" and distributed else None
        generator = torch.Generator().manual_seed(settings.seed) if settings.seed is not None else None
        return DataLoader(
            dataset,
            batch_size=settings.test_batch_size if split == "test" else settings.batch_size,
            shuffle=split == "train",
            sampler=sampler,
            num_workers=settings.num_workers,
            pin_memory=settings.pin_memory,
            persistent_workers=settings.persistent_workers and settings.num_workers > 0,
            drop_last=split == "train",
            generator=generator,
            collate_fn=collate_test if split == "test" else collate_flat,
            # A CUDA decoder cannot run in workers forked after CUDA started (the model is on the GPU).
            multiprocessing_context=self._worker_start_method(dataset) if settings.num_workers > 0 else None,
        )

    @staticmethod
    def _worker_start_method(dataset: Dataset) -> str | None:
        datasets = dataset.datasets if isinstance(dataset, ConcatDataset) else [dataset]
        methods = {getattr(getattr(each, "reader", None), "worker_start_method", None) for each in datasets}
        return "spawn" if "spawn" in methods else None

    def on_after_batch_transfer(self, batch: dict, dataloader_idx: int) -> dict:
        """uint8 batches, now on the device, to the networks' inputs (module docstring)."""
        return self.finish(batch, input_dtype(self.trainer))

    def finish(self, batch: dict, dtype: torch.dtype | None = None) -> dict:
        """A collated batch of this module's samples, on its device, as the networks take it."""
        sampling = self.frame_sampling
        return finish_batch(batch, self.input_specs, self.augment.flow_mean_subtraction, dtype, sampling.stacking,
                            sampling.bidirectional_flow)

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
        """Test batches (views axis V = ``test.svm_positions`` x crops of ``test.svm_crops``) over
        the training videos, for ``TwoStreamClassifier``'s SVM fusion: in order, sharded without
        padding under DDP like the test loader, so each video is scored exactly once."""
        return self.loader(self._dataset("svm_train"), "test")
