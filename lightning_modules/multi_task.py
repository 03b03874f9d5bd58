"""Multi-task learning (two-stream paper, section 4): one network, one softmax head per dataset.

The loss is the sum over heads of each head's cross-entropy on its own dataset's
samples (the batch key ``dataset`` says which), so a UCF-101 label never reaches the
HMDB-51 head. Metrics, test scores and score files are per dataset.

The network loses its classifier (``reset_classifier(0)``), so ``network(x)`` returns the
pre-logits (``forward_head(..., pre_logits=True)``, N x ``num_features``); the heads are a
``ModuleList`` of linear classifiers on them, one per dataset (``heads.<d>.weight``).
"""

from functools import partial
from typing import Any

import torch.nn.functional as F
from torch import Tensor, nn

from lightning_modules.classifier import (
    NOT_HYPERPARAMETERS,
    NetworkBuilder,
    Outputs,
    StreamsModule,
    stream_key,
)
from lightning_modules.evaluation import forward_views, video_scores
from lightning_modules.optim import configure_optimizers


class MultiTaskClassifier(StreamsModule):
    """One backbone shared by several datasets, each with its own classifier.

    Args:
        network: the shared network's class, configured without its number of classes;
            its classifier is replaced by one head per dataset.
        num_classes: classes per dataset, e.g. ``[101, 51]``.
        dataset_names: a name per dataset for log keys and score files, e.g.
            ``["ucf101", "hmdb51"]``; batch key ``dataset`` indexes this list.
        stream: batch key the network reads; None: its ``input_spec.modality``.
        shared: every module's settings (optimizer, scheduler, label_smoothing,
            backbone_lr_scale: the shared network's learning rate relative to the heads',
            evaluation: one score file per dataset, ``test_scores_<name>.npz``): see
            ``StreamsModule``. ``freeze_backbone`` is refused: the shared network is what
            multi-task learning trains.
    """

    def __init__(
        self,
        network: NetworkBuilder,
        num_classes: list[int],
        dataset_names: list[str],
        stream: str | None = None,
        **shared: Any,
    ) -> None:
        if len(num_classes) != len(dataset_names) or len(set(dataset_names)) != len(dataset_names):
            raise ValueError(f"need one distinct name per dataset: {dataset_names} for {num_classes}")
        if shared.get("freeze_backbone"):
            raise ValueError("MultiTaskClassifier trains its shared network on every dataset: freeze_backbone "
                             "is not supported (train a VideoClassifier per dataset for heads only)")
        network = network(num_classes[0])  # its classifier is replaced by one head per dataset below
        if not isinstance(getattr(network, "num_features", None), int):
            raise TypeError(f"{type(network).__name__} has no num_features (the size of its pre-logits), which the "
                            "heads of MultiTaskClassifier read")
        key = stream_key(network, stream)
        super().__init__({key: ("network", key)}, **shared)
        self.save_hyperparameters(ignore=["network", *NOT_HYPERPARAMETERS])
        heads = nn.ModuleList(nn.Linear(network.num_features, classes) for classes in num_classes)
        network.reset_classifier(0)  # network(x): the pre-logits the heads read
        self.network, self.heads = network, heads
        self.key, self.dataset_names = key, list(dataset_names)
        self.add_metrics(dict(zip(dataset_names, num_classes)))

    def model_step(self, batch: dict[str, Tensor]) -> tuple[Tensor, dict[str, Tensor], Outputs]:
        labels, datasets = batch["label"], batch["dataset"]
        features = self.network.forward_features(batch[self.key])
        losses, outputs = {}, {}
        for d, name in enumerate(self.dataset_names):
            # Every head sees every sample (so DDP finds all heads used) but learns from its own only.
            # Each head draws its own dropout mask of the pre-logits, as when the heads took turns in
            # the network's classifier slot: the same random numbers, the same training.
            logits = self.heads[d](self.network.forward_head(features, pre_logits=True))
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
        """Dataset ``dataset``'s logits of the inputs ``x``."""
        return self.heads[dataset](self.network(x))

    def video_scores(self, batch: dict[str, Tensor]) -> dict[str, Tensor]:
        """Per-video scores of each dataset's videos in the batch, by that dataset's head (N_d x C_d)."""
        scores = {}
        for d, name in enumerate(self.dataset_names):
            own = batch["dataset"] == d
            if own.any():
                views = forward_views(partial(self.features_to_logits, dataset=d), batch[self.key][own],
                                      self.evaluation.view_chunk_size)
                scores[name] = video_scores(views)
        return scores

    def on_test_epoch_start(self) -> None:
        self.video_test.start(self.dataset_names)  # in the datamodule's order: test_video_ids[d] names group d

    def test_step(self, batch: dict[str, Tensor], batch_idx: int) -> None:
        for name, scores in self.video_scores(batch).items():
            own = batch["dataset"] == self.dataset_names.index(name)
            self.video_test.add(batch["index"][own], batch["label"][own], {self.key: scores}, group=name)

    def predict_step(self, batch: dict[str, Tensor], batch_idx: int) -> dict[str, dict[str, Tensor]]:
        return {name: {"index": batch["index"][batch["dataset"] == self.dataset_names.index(name)], "scores": scores}
                for name, scores in self.video_scores(batch).items()}
