"""Multi-task learning (two-stream paper, section 4): one network, one softmax head per dataset.

The loss is the sum over heads of each head's cross-entropy on its own dataset's
samples (the batch key ``dataset`` says which), so a UCF-101 label never reaches the
HMDB-51 head. Metrics, test scores and score files are per dataset.

The heads are the network's own head (whatever its ``reset_classifier`` replaces),
one fresh copy per dataset held in ``heads``; the network keeps no head of its own,
and each forward puts the wanted head in its slot for ``forward_head``.
"""

from functools import partial
from typing import Any

import numpy as np
import torch.nn.functional as F
from pytorch_lightning.cli import LRSchedulerCallable, OptimizerCallable
from torch import Tensor, nn

from lightning_modules.classifier import (
    NetworkBuilder,
    Outputs,
    StreamsModule,
    stream_key,
)
from lightning_modules.optim import PaperSGD, classifier_names, configure_optimizers
from lightning_modules.video_scores import VideoScoreCollector
from lightning_modules.views import forward_views, video_scores
from models.weights import mark_trained


class MultiTaskClassifier(StreamsModule):
    """One backbone shared by several datasets, each with its own classifier.

    Args:
        network: the shared network's class, configured without its number of classes;
            its classifier is replaced by one head per dataset.
        num_classes: classes per dataset, e.g. ``[101, 51]``.
        dataset_names: a name per dataset for log keys and score files, e.g.
            ``["ucf101", "hmdb51"]``; batch key ``dataset`` indexes this list.
        optimizer: builds the optimizer from the parameter groups (default: SGD, momentum 0.9).
        scheduler: builds the learning-rate scheduler; None: constant learning rate.
        label_smoothing: label smoothing of the cross-entropies.
        backbone_lr_scale: the shared network's learning rate relative to the heads'.
        view_chunk_size: test views per forward pass.
        score_file: per-video test scores, one file per dataset
            (``test_scores_<name>.npz``), relative to ``trainer.log_dir``; None: not written.
        stream: batch key the network reads; None: its ``input_spec.modality``.
    """

    def __init__(
        self,
        network: NetworkBuilder,
        num_classes: list[int],
        dataset_names: list[str],
        optimizer: OptimizerCallable = PaperSGD,
        scheduler: LRSchedulerCallable | None = None,
        label_smoothing: float = 0.0,
        backbone_lr_scale: float = 1.0,
        view_chunk_size: int = 32,
        score_file: str | None = "test_scores.npz",
        stream: str | None = None,
    ) -> None:
        if len(num_classes) != len(dataset_names) or len(set(dataset_names)) != len(dataset_names):
            raise ValueError(f"need one distinct name per dataset: {dataset_names} for {num_classes}")
        network = network(num_classes[0])  # its head is replaced by one per dataset below
        key = stream_key(network, stream)
        super().__init__({key: ("network", key)}, optimizer, scheduler, label_smoothing, {}, backbone_lr_scale,
                         False, view_chunk_size, score_file)
        self.save_hyperparameters(ignore=["network", "optimizer", "scheduler"])
        (slot,) = classifier_names(network)
        heads = []
        for classes in num_classes:
            network.reset_classifier(classes)
            heads.append(network.get_submodule(slot))
        parent, _, self._slot = slot.rpartition(".")
        self._parent = parent
        delattr(network.get_submodule(parent), self._slot)  # only the heads below hold weights
        mark_trained(network, None)  # the heads are new, whatever weights the network came with
        self.network, self.heads = network, nn.ModuleList(heads)
        self.key, self.dataset_names = key, list(dataset_names)
        self.add_metrics(dict(zip(dataset_names, num_classes)))

    def head_logits(self, features: Tensor, dataset: int) -> Tensor:
        """The network's ``forward_head`` with dataset ``dataset``'s head in the slot."""
        parent = self.network.get_submodule(self._parent)
        setattr(parent, self._slot, self.heads[dataset])
        try:
            return self.network.forward_head(features)
        finally:
            delattr(parent, self._slot)

    def model_step(self, batch: dict[str, Tensor]) -> tuple[Tensor, dict[str, Tensor], Outputs]:
        labels, datasets = batch["label"], batch["dataset"]
        features = self.network.forward_features(batch[self.key])
        losses, outputs = {}, {}
        for d, name in enumerate(self.dataset_names):
            # Every head sees every sample (so DDP finds all heads used) but learns from its own only.
            logits = self.head_logits(features, d)
            own = datasets == d
            per_sample = F.cross_entropy(logits, labels.where(own, 0), reduction="none",
                                         label_smoothing=self.label_smoothing)
            losses[name] = (per_sample * own).sum() / own.sum().clamp(min=1)
            outputs[name] = (logits[own], labels[own])
        return sum(losses.values()), losses, outputs

    def configure_optimizers(self) -> dict[str, Any]:
        groups = [{"params": list(self.heads.parameters()), "lr_scale": 1.0},
                  {"params": list(self.network.parameters()), "lr_scale": self.backbone_lr_scale}]
        return configure_optimizers(groups, self.optimizer, self.scheduler)

    def features_to_logits(self, x: Tensor, dataset: int) -> Tensor:
        return self.head_logits(self.network.forward_features(x), dataset)

    def video_scores(self, batch: dict[str, Tensor]) -> dict[str, Tensor]:
        """Per-video scores of each dataset's videos in the batch, by that dataset's head (N_d x C_d)."""
        scores = {}
        for d, name in enumerate(self.dataset_names):
            own = batch["dataset"] == d
            if own.any():
                views = forward_views(partial(self.features_to_logits, dataset=d), batch[self.key][own],
                                      self.view_chunk_size)
                scores[name] = video_scores(views)
        return scores

    def on_test_epoch_start(self) -> None:
        self.collectors = {name: VideoScoreCollector() for name in self.dataset_names}

    def test_step(self, batch: dict[str, Tensor], batch_idx: int) -> None:
        for name, scores in self.video_scores(batch).items():
            own = batch["dataset"] == self.dataset_names.index(name)
            self.collectors[name].add(batch["index"][own], batch["label"][own], {self.key: scores})

    def predict_step(self, batch: dict[str, Tensor], batch_idx: int) -> dict[str, dict[str, Tensor]]:
        return {name: {"index": batch["index"][batch["dataset"] == self.dataset_names.index(name)], "scores": scores}
                for name, scores in self.video_scores(batch).items()}

    def test_video_ids(self, results: dict[str, np.ndarray], group: str = "") -> list[str]:
        """Dataset ``group``'s test video ids (the datamodule keeps one list per dataset)."""
        ids = getattr(self.trainer.datamodule, "test_video_ids", None)
        if ids is None:
            return super().test_video_ids(results, group)
        return list(ids[self.dataset_names.index(group)])
