"""Multi-task learning (two-stream paper, section 4): one network, one softmax head per dataset.

The loss is the sum over heads of each head's cross-entropy on its own dataset's
samples (the batch key ``dataset`` says which), so a UCF-101 label never reaches the
HMDB-51 head. Metrics, test scores and score files are per dataset.

The network loses its classifier (``reset_classifier(0)``), so ``network(x)`` returns the
pre-logits (``forward_head(..., pre_logits=True)``, N x ``num_features``); the heads are a
``ModuleList`` of linear classifiers on them, one per dataset (``heads.<d>.weight``).
Checkpoints saved when an Inception I3D's heads were copies of its 1x1x1 logits conv
(``heads.<d>.conv3d.weight``) load into these linear heads.
"""

from functools import partial
from typing import Any

import torch.nn.functional as F
from pytorch_lightning.cli import LRSchedulerCallable, OptimizerCallable
from torch import Tensor, nn

from lightning_modules.classifier import (
    NetworkBuilder,
    Outputs,
    StreamsModule,
    stream_key,
)
from lightning_modules.optim import PaperSGD, configure_optimizers
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
            (``test_scores_<name>.npz``), relative to ``trainer.log_dir``
            (under cli.py: the experiment's folder); None: not written.
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
        network = network(num_classes[0])  # its classifier is replaced by one head per dataset below
        if not isinstance(getattr(network, "num_features", None), int):
            raise TypeError(f"{type(network).__name__} has no num_features (the size of its pre-logits), which the "
                            "heads of MultiTaskClassifier read")
        key = stream_key(network, stream)
        super().__init__({key: ("network", key)}, optimizer=optimizer, scheduler=scheduler,
                         label_smoothing=label_smoothing, backbone_lr_scale=backbone_lr_scale,
                         view_chunk_size=view_chunk_size, score_file=score_file)
        self.save_hyperparameters(ignore=["network", "optimizer", "scheduler"])
        heads = nn.ModuleList(nn.Linear(network.num_features, classes) for classes in num_classes)
        network.reset_classifier(0)  # network(x): the pre-logits the heads read
        mark_trained(network, None)  # the heads are new, whatever weights the network came with
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

    def on_load_checkpoint(self, checkpoint: dict[str, Any]) -> None:
        state = checkpoint["state_dict"]
        for key in [key for key in state if key.startswith("heads.") and ".conv3d." in key]:
            # An I3D head saved as a 1x1x1 conv: the same linear map on the pooled features.
            value = state.pop(key)
            state[key.replace(".conv3d.", ".")] = value.flatten(1) if value.dim() == 5 else value
        super().on_load_checkpoint(checkpoint)

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
        self.video_test.start(self.dataset_names)  # in the datamodule's order: test_video_ids[d] names group d

    def test_step(self, batch: dict[str, Tensor], batch_idx: int) -> None:
        for name, scores in self.video_scores(batch).items():
            own = batch["dataset"] == self.dataset_names.index(name)
            self.video_test.add(batch["index"][own], batch["label"][own], {self.key: scores}, group=name)

    def predict_step(self, batch: dict[str, Tensor], batch_idx: int) -> dict[str, dict[str, Tensor]]:
        return {name: {"index": batch["index"][batch["dataset"] == self.dataset_names.index(name)], "scores": scores}
                for name, scores in self.video_scores(batch).items()}
