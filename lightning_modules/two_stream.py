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

from typing import Any

import numpy as np
import torch
from pytorch_lightning.utilities import rank_zero_warn
from torch import Tensor

from lightning_modules.classifier import (
    NOT_HYPERPARAMETERS,
    NetworkBuilder,
    Outputs,
    StreamsModule,
    stream_key,
)
from lightning_modules.evaluation.fusion_table import accuracy, format_table, fusion_rows
from lightning_modules.evaluation.video_test import Group, log_test_metrics
from lightning_modules.provenance import load_stream_weights

STREAMS = ("spatial", "temporal")
# The training videos' per-video scores, which the SVM fusion learns from.
SVM_TRAIN = Group("svm_train", ids="train_video_ids", metrics=False)


class TwoStreamClassifier(StreamsModule):
    """A spatial (RGB) and a temporal (flow) stream trained together and fused late.

    Args:
        spatial: the spatial stream's network class, configured without its number of
            classes (reads ``rgb`` unless its input spec says otherwise).
        temporal: the temporal stream's network class (reads ``flow``).
        num_classes: classes to predict; linked from the data's class list by the CLI.
        spatial_lr_scale: learning-rate scale of the spatial stream.
        temporal_lr_scale: learning-rate scale of the temporal stream.
        fusion_weights: spatial and temporal weights of the softmax average (normalised to
            sum 1; TSN used 1 : 1.5).
        svm_c: regularisation parameter C of the fusion SVM.
        spatial_checkpoint: a VideoClassifier checkpoint whose network weights the spatial
            stream takes (for testing and fusing streams trained apart), or a DeepMind-port
            I3D file with as many classes; None: keep the given weights. The stream may
            then be evaluated without training (``lightning_modules.provenance``).
        temporal_checkpoint: likewise for the temporal stream.
        shared: every module's settings (optimizer, scheduler, label_smoothing,
            backbone_lr_scale, freeze_backbone, evaluation): see ``StreamsModule``. The score
            file holds both streams' scores (``scores_spatial``, ``scores_temporal``).
    """

    def __init__(
        self,
        spatial: NetworkBuilder,
        temporal: NetworkBuilder,
        num_classes: int,
        spatial_lr_scale: float = 1.0,
        temporal_lr_scale: float = 1.0,
        fusion_weights: tuple[float, float] = (1.0, 1.0),
        svm_c: float = 1.0,
        spatial_checkpoint: str | None = None,
        temporal_checkpoint: str | None = None,
        **shared: Any,
    ) -> None:
        spatial, temporal = spatial(num_classes), temporal(num_classes)
        streams = {"spatial": ("spatial", stream_key(spatial, None)), "temporal": ("temporal", stream_key(temporal, None))}
        super().__init__(streams, **shared)
        self.lr_scales = {"spatial": spatial_lr_scale, "temporal": temporal_lr_scale}
        self.save_hyperparameters(ignore=["spatial", "temporal", *NOT_HYPERPARAMETERS])
        self.spatial, self.temporal = spatial, temporal
        for stream, checkpoint in zip(STREAMS, (spatial_checkpoint, temporal_checkpoint)):
            if checkpoint is not None:
                load_stream_weights(self, stream, checkpoint)
        self.fusion_weights, self.svm_c = tuple(fusion_weights), svm_c
        self.add_metrics(dict.fromkeys(STREAMS, num_classes), stages=("train",))
        self.add_metrics(dict.fromkeys((*STREAMS, "fusion"), num_classes), stages=("val",))
        self.val_metrics["fusion"].prefix = "val/"  # val/acc is the two-stream model's: the fusion's
        if self.freeze_backbone:
            self.freeze_backbones()
        self.table: dict[str, float | None] = {}
        self.svm_train: dict[str, np.ndarray] | None = None  # after a test: the SVM's training videos' results

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
        # Decided from the loaders, the same on every rank (the gather at the end is collective).
        svm = len(self.trainer.num_test_batches) > 1
        if not svm:
            rank_zero_warn("the test has no second loader with the SVM's training videos (a VideoDataModule's "
                           "test_dataloader() appends svm_train_dataloader() for this model): no SVM fusion")
        self.video_test.start([Group(), *([SVM_TRAIN] if svm else [])])

    def test_step(self, batch: dict[str, Tensor], batch_idx: int, dataloader_idx: int = 0) -> None:
        group = "" if dataloader_idx == 0 else SVM_TRAIN.name
        self.video_test.add(batch["index"], batch["label"], self.video_scores(batch), group=group)

    def on_test_epoch_end(self) -> None:
        super().on_test_epoch_end()
        # The training videos' scores, saved beside the test scores so that the SVM fusion can be
        # redone offline (python -m lightning_modules.evaluation); not a test result.
        self.svm_train = self.test_results.pop(SVM_TRAIN.name, None)
        results = self.test_results[""]
        if not results["index"].size:
            return
        labels = results["labels"]
        rows = fusion_rows(results, self.svm_train, STREAMS, self.fusion_weights, self.svm_c)
        for row, key in (("fusion by averaging", "fusion_avg"), ("fusion by SVM", "fusion_svm")):
            if rows[row] is not None:
                log_test_metrics(self, rows[row], labels, key)
        self.table = {row: None if scores is None else accuracy(scores, labels) for row, scores in rows.items()}
        if self.trainer.is_global_zero:
            print(format_table(rows, labels))
