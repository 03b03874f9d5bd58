"""Two-stream networks (Simonyan & Zisserman 2014): a spatial and a temporal stream, fused late.

Both streams train in one fit, each with its own loss (the total is their sum) and its
own learning-rate scale. Validation and test score each stream and their fusion; the
test ends with the paper's table: spatial, temporal, fusion by averaging, fusion by SVM.

SVM fusion is fitted on the training videos' per-video scores, scored with the test
protocol. They are the test's second loader (dataloader_idx 1): the module lists
``extra_test_loaders = ("svm_train",)`` and the datamodule's ``test_dataloader()`` appends
its ``svm_train_dataloader()`` (batches like the test ones, over the training split; fewer
views are fine). Inside Lightning's test loop they get what the test videos get: the
precision's autocast (so the SVM trains on features computed as the ones it classifies),
device placement and the distributed sampler (exactly once per video under DDP: that
loader must shard without padding, as the test loader does). Without it the SVM row reads
"n/a".
"""

from pathlib import Path
from typing import Any

import numpy as np
import torch
from pytorch_lightning.cli import LRSchedulerCallable, OptimizerCallable
from pytorch_lightning.utilities import rank_zero_warn
from torch import Tensor

from lightning_modules.classifier import (
    NetworkBuilder,
    Outputs,
    StreamsModule,
    load_network_weights,
    stream_key,
)
from lightning_modules.fusion_table import (
    accuracy,
    format_table,
    svm_fused_decision,
    two_stream_rows,
)
from lightning_modules.optim import PaperSGD
from lightning_modules.video_scores import VideoScoreCollector, save_video_scores
from lightning_modules.video_test import log_test_metrics, video_ids

STREAMS = ("spatial", "temporal")


class TwoStreamClassifier(StreamsModule):
    """A spatial (RGB) and a temporal (flow) stream trained together and fused late.

    Args:
        spatial: the spatial stream's network class, configured without its number of
            classes (reads ``rgb`` unless its input spec says otherwise).
        temporal: the temporal stream's network class (reads ``flow``).
        num_classes: classes to predict; linked from the data's class list by the CLI.
        optimizer: builds the optimizer from the parameter groups (default: SGD, momentum 0.9).
        scheduler: builds the learning-rate scheduler; None: constant learning rate.
        label_smoothing: label smoothing of both cross-entropies.
        spatial_lr_scale: learning-rate scale of the spatial stream.
        temporal_lr_scale: learning-rate scale of the temporal stream.
        backbone_lr_scale: each stream's backbone learning rate relative to its head.
        freeze_backbone: train the streams' heads only.
        fusion_weights: spatial and temporal weights of the softmax average (normalised to
            sum 1; TSN used 1 : 1.5).
        svm_c: regularisation parameter C of the fusion SVM.
        view_chunk_size: test views per forward pass.
        score_file: per-video test scores of both streams (``scores_spatial``,
            ``scores_temporal``), relative to ``trainer.log_dir``
            (under cli.py: the experiment's folder); None: not written.
        spatial_checkpoint: a VideoClassifier checkpoint whose network weights the spatial
            stream takes (for testing streams trained apart); None: keep the given weights.
        temporal_checkpoint: likewise for the temporal stream.
    """

    def __init__(
        self,
        spatial: NetworkBuilder,
        temporal: NetworkBuilder,
        num_classes: int,
        optimizer: OptimizerCallable = PaperSGD,
        scheduler: LRSchedulerCallable | None = None,
        label_smoothing: float = 0.0,
        spatial_lr_scale: float = 1.0,
        temporal_lr_scale: float = 1.0,
        backbone_lr_scale: float = 1.0,
        freeze_backbone: bool = False,
        fusion_weights: tuple[float, float] = (1.0, 1.0),
        svm_c: float = 1.0,
        view_chunk_size: int = 32,
        score_file: str | None = "test_scores.npz",
        spatial_checkpoint: str | None = None,
        temporal_checkpoint: str | None = None,
    ) -> None:
        spatial, temporal = spatial(num_classes), temporal(num_classes)
        streams = {"spatial": ("spatial", stream_key(spatial, None)), "temporal": ("temporal", stream_key(temporal, None))}
        super().__init__(streams, optimizer=optimizer, scheduler=scheduler, label_smoothing=label_smoothing,
                         lr_scales={"spatial": spatial_lr_scale, "temporal": temporal_lr_scale},
                         backbone_lr_scale=backbone_lr_scale, freeze_backbone=freeze_backbone,
                         view_chunk_size=view_chunk_size, score_file=score_file)
        self.save_hyperparameters(ignore=["spatial", "temporal", "optimizer", "scheduler"])
        for checkpoint, network in ((spatial_checkpoint, spatial), (temporal_checkpoint, temporal)):
            if checkpoint is not None:
                load_network_weights(network, checkpoint)
        self.spatial, self.temporal = spatial, temporal
        self.fusion_weights, self.svm_c = tuple(fusion_weights), svm_c
        self.add_metrics(dict.fromkeys(STREAMS, num_classes), stages=("train",))
        self.add_metrics(dict.fromkeys((*STREAMS, "fusion"), num_classes), stages=("val",))
        self.val_metrics["fusion"].prefix = "val/"  # val/acc is the two-stream model's: the fusion's
        if freeze_backbone:
            self.freeze_backbones()
        self.table: dict[str, float | None] = {}
        self.svm_collector: VideoScoreCollector | None = None
        self.svm_train: dict[str, np.ndarray] | None = None

    @classmethod
    def from_checkpoints(cls, spatial_checkpoint: str | Path, temporal_checkpoint: str | Path,
                         spatial: NetworkBuilder, temporal: NetworkBuilder, num_classes: int,
                         **kwargs: Any) -> "TwoStreamClassifier":
        """Two separately trained ``VideoClassifier`` checkpoints as one module, to test and fuse.

        The networks must be built as they were trained (architecture, classes); the
        checkpoints give their weights (read with ``weights_only=True``).
        """
        return cls(spatial, temporal, num_classes, spatial_checkpoint=str(spatial_checkpoint),
                   temporal_checkpoint=str(temporal_checkpoint), **kwargs)

    def fuse(self, spatial: Tensor, temporal: Tensor) -> Tensor:
        """Weighted average of the two streams' softmax scores."""
        w = torch.tensor(self.fusion_weights, dtype=spatial.dtype, device=spatial.device)
        return (w[0] * spatial + w[1] * temporal) / w.sum()

    def model_step(self, batch: dict[str, Tensor]) -> tuple[Tensor, dict[str, Tensor], Outputs]:
        loss, losses, outputs = super().model_step(batch)
        (spatial, labels), (temporal, _) = outputs["spatial"], outputs["temporal"]
        outputs["fusion"] = (self.fuse(spatial.detach().softmax(1), temporal.detach().softmax(1)), labels)
        return loss, losses, outputs

    # Test: both streams, their fusions, and the table.

    # The datamodule's test_dataloader() appends these after the test videos (dataloader_idx 1).
    extra_test_loaders = ("svm_train",)

    def on_test_epoch_start(self) -> None:
        super().on_test_epoch_start()
        self.svm_train = None
        # Decided from the loaders, the same on every rank (the gather below is collective).
        self.svm_collector = VideoScoreCollector() if len(self.trainer.num_test_batches) > 1 else None
        if self.svm_collector is None:
            rank_zero_warn("the test has no second loader with the SVM's training videos (a VideoDataModule's "
                           "test_dataloader() appends svm_train_dataloader() for this model): no SVM fusion")

    def test_step(self, batch: dict[str, Tensor], batch_idx: int, dataloader_idx: int = 0) -> None:
        if dataloader_idx == 0:
            super().test_step(batch, batch_idx)
        else:
            self.svm_collector.add(batch["index"], batch["label"], self.video_scores(batch))

    def on_test_epoch_end(self) -> None:
        super().on_test_epoch_end()
        if self.svm_collector is not None:
            self.svm_train = self.svm_collector.gather()
        results = self.test_results[""]
        if not results["index"].size:
            return
        labels = results["labels"]
        streams = [results[f"scores_{name}"] for name in STREAMS]
        decision = None
        if self.svm_train is not None:
            decision = svm_fused_decision([self.svm_train[f"scores_{name}"] for name in STREAMS],
                                          self.svm_train["labels"], streams, self.svm_c)
        rows = two_stream_rows(*streams, self.fusion_weights, decision)
        for row, key in (("fusion by averaging", "fusion_avg"), ("fusion by SVM", "fusion_svm")):
            if rows[row] is not None:
                log_test_metrics(self, rows[row], labels, key)
        self.table = {row: None if scores is None else accuracy(scores, labels) for row, scores in rows.items()}
        path = self.video_test.score_path(self.trainer, "svm_train")  # on every rank: finding the log dir is a collective
        if self.trainer.is_global_zero:
            self.save_svm_train_scores(path)
            print(format_table(rows, labels))

    def save_svm_train_scores(self, path: Path | None) -> None:
        """The training videos' scores beside the test scores, so the SVM fusion can be redone
        offline (``python -m lightning_modules.fusion_table``)."""
        if path is None or self.svm_train is None or not self.svm_train["index"].size:
            return
        save_video_scores(path, self.svm_train, video_ids(self.trainer, self.svm_train, "train_video_ids"))
