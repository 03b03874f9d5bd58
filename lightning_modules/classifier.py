"""Video classification with one stream, and the machinery the two-stream and multi-task modules share.

Training sees one sample (a frame, a flow stack or a clip) per video; validation one
centre view per video; test every view of every video (25 x 10 for 2D streams), pushed
through the network in chunks, softmax averaged over the views. Test metrics are
computed once, on the per-video scores gathered from all ranks, so every video counts
exactly once under DDP; the scores are saved for later fusion. Collecting, gathering,
logging and the score file are ``lightning_modules.evaluation``'s; a module says how a
batch of test videos is scored (``video_scores``).
"""

from collections.abc import Callable
from typing import Any

import numpy as np
import pytorch_lightning as pl
import torch
import torch.nn.functional as F
from pytorch_lightning.cli import LRSchedulerCallable, OptimizerCallable
from torch import Tensor, nn

from lightning_modules.evaluation import Evaluation, VideoTest, forward_views, video_scores
from lightning_modules.metrics import classification_metrics
from lightning_modules.optim import (
    PaperSGD,
    classifier_name,
    configure_optimizers,
    parameter_groups,
    split_head,
)
from lightning_modules.provenance import TRAINED_HERE, load_backbone_weights, track_weights

Outputs = dict[str, tuple[Tensor, Tensor]]  # name -> (scores N x C, labels N)

# Shared settings kept out of a module's saved hyper-parameters, which torch.load(weights_only=True)
# must read: callables, and the evaluation block (a dataclass; under the CLI the config's copy is saved).
NOT_HYPERPARAMETERS = ("optimizer", "scheduler", "evaluation")

# A network class configured in YAML (class_path/init_args) without its number of
# classes, which the module passes: the data says it once (see cli.py).
NetworkBuilder = Callable[[int], nn.Module]


def stream_key(network: nn.Module, key: str | None) -> str:
    """The batch key a network reads: the given one, else its input spec's modality."""
    if key is not None:
        return key
    spec = getattr(network, "input_spec", None)
    if spec is None:
        raise ValueError(f"{type(network).__name__} has no input_spec: say which batch key it reads")
    return spec.modality


class StreamsModule(pl.LightningModule):
    """What the classifiers share: streams, losses, metrics, per-video test scores, optimizer.

    A stream is a network registered at an attribute, reading one batch key. Subclasses
    name their streams; several streams get their names in the log keys
    (``val/spatial/acc``), a single one does not (``val/acc``).

    The keyword arguments are every module's settings, declared here once: a subclass takes
    them as ``**shared`` and passes them on (jsonargparse reads them through it, so they are
    ``model.init_args.<name>`` of any module's config). A subclass sets its networks after
    this ``__init__`` and then calls ``freeze_backbones`` when ``freeze_backbone`` is set.

    Args:
        streams: stream name -> (attribute holding the network, batch key it reads).
        optimizer: builds the optimizer from the parameter groups (default: SGD, momentum
            0.9, lr 1e-2, as the two-stream paper).
        scheduler: builds the learning-rate scheduler from the optimizer; None: constant
            learning rate.
        label_smoothing: label smoothing of the cross-entropies.
        backbone_lr_scale: every stream's backbone learning rate relative to its head's (e.g.
            0.1 for an ImageNet-pretrained spatial stream). The head is the module the
            network's ``get_classifier()`` returns (``fc``, I3D's ``logits``).
        freeze_backbone: train the heads only: the paper's "last layer only" spatial
            fine-tuning. The backbones also stay in eval mode (batch-norm statistics,
            dropout) while training.
        evaluation: views per test forward pass and the per-video score file
            (``lightning_modules.evaluation.Evaluation``).
    """

    def __init__(self, streams: dict[str, tuple[str, str]], *, optimizer: OptimizerCallable = PaperSGD,
                 scheduler: LRSchedulerCallable | None = None, label_smoothing: float = 0.0,
                 backbone_lr_scale: float = 1.0, freeze_backbone: bool = False,
                 evaluation: Evaluation = Evaluation()) -> None:
        super().__init__()
        self.streams = streams
        self.optimizer, self.scheduler = optimizer, scheduler
        self.label_smoothing = label_smoothing
        self.backbone_lr_scale = backbone_lr_scale
        self.lr_scales: dict[str, float] = {}  # stream name -> learning-rate scale (default 1); subclasses set it
        self.freeze_backbone = freeze_backbone
        self.evaluation = evaluation
        self.train_metrics, self.val_metrics = nn.ModuleDict(), nn.ModuleDict()
        self.video_test = VideoTest(evaluation.score_file)
        self.test_results: dict[str, dict[str, np.ndarray]] = {}  # per group, after a test (reports read it)
        track_weights(self)  # where the weights come from: validate/test/predict refuse untrained ones

    # Building blocks for subclasses.

    def stream_network(self, stream: str) -> nn.Module:
        return self.get_submodule(self.streams[stream][0])

    @property
    def input_specs(self) -> dict[str, Any]:
        """Batch key -> InputSpec of the network reading it (the datamodule adopts these)."""
        return {key: getattr(self.get_submodule(attr), "input_spec", None) for attr, key in self.streams.values()}

    def add_metrics(self, num_classes: dict[str, int], stages: tuple[str, ...] = ("train", "val")) -> None:
        """Metric collections per stage for each named output (a stream, a fusion, a dataset)."""
        for stage in stages:
            metrics = self.train_metrics if stage == "train" else self.val_metrics
            for name, classes in num_classes.items():
                metrics[name] = classification_metrics(classes, prefix=f"{stage}/{name}/")
            if len(metrics) == 1:
                name = next(iter(metrics))
                metrics[name].prefix = f"{stage}/"

    def freeze_backbones(self) -> None:
        """The paper's "last layer only": the backbones get no gradients and stay in eval mode
        (batch-norm statistics, dropout) while the heads train."""
        self._frozen: list[str] = []
        for stream, (attr, _) in self.streams.items():
            network = self.stream_network(stream)
            for p in split_head(network)[1]:
                p.requires_grad_(False)
            head = classifier_name(network)
            for name, _ in network.named_modules():
                related = name == head or name.startswith(head + ".") or head.startswith(name + ".")
                if name and not related:
                    self._frozen.append(f"{attr}.{name}")

    def train(self, mode: bool = True) -> "StreamsModule":
        super().train(mode)
        for name in getattr(self, "_frozen", ()):
            self.get_submodule(name).training = False
        return self

    # One step for every stage.

    def model_step(self, batch: dict[str, Tensor]) -> tuple[Tensor, dict[str, Tensor], Outputs]:
        """Total loss, loss per stream, and (scores, labels) per named output."""
        labels = batch["label"]
        logits = {name: self.stream_network(name)(batch[key]) for name, (_, key) in self.streams.items()}
        losses = {name: F.cross_entropy(value, labels, label_smoothing=self.label_smoothing)
                  for name, value in logits.items()}
        return sum(losses.values()), losses, {name: (value, labels) for name, value in logits.items()}

    def _shared_step(self, batch: dict[str, Tensor], stage: str) -> Tensor:
        loss, losses, outputs = self.model_step(batch)
        train = stage == "train"
        batch_size = len(batch["label"])
        self.log(f"{stage}/loss", loss, on_step=train, on_epoch=True, prog_bar=True, batch_size=batch_size,
                 sync_dist=not train)
        if len(losses) > 1:
            self.log_dict({f"{stage}/{name}/loss": value for name, value in losses.items()}, on_step=train,
                          on_epoch=True, batch_size=batch_size, sync_dist=not train)
        metrics = self.train_metrics if train else self.val_metrics
        for name, (scores, labels) in outputs.items():
            if name in metrics and labels.numel():
                metrics[name].update(scores.detach(), labels)
        for collection in metrics.values():
            self.log_dict(collection, on_step=False, on_epoch=True)
        return loss

    def training_step(self, batch: dict[str, Tensor], batch_idx: int) -> Tensor:
        self.weights_origin = TRAINED_HERE
        loss = self._shared_step(batch, "train")
        if not torch.isfinite(loss):
            raise FloatingPointError(
                f"the training loss is {loss.item()} at global step {self.global_step} (epoch "
                f"{self.current_epoch}, batch {batch_idx}); lower the learning rate or check the inputs")
        return loss

    def validation_step(self, batch: dict[str, Tensor], batch_idx: int) -> None:
        self._shared_step(batch, "val")

    def configure_optimizers(self) -> dict[str, Any]:
        groups = [group for stream in self.streams
                  for group in parameter_groups(self.stream_network(stream), self.lr_scales.get(stream, 1.0),
                                                self.backbone_lr_scale, self.freeze_backbone)]
        return configure_optimizers(groups, self.optimizer, self.scheduler)

    # Test: per-video scores (lightning_modules.evaluation.VideoTest collects, logs and saves them).

    def video_scores(self, batch: dict[str, Tensor]) -> dict[str, Tensor]:
        """Per-video softmax averaged over the views, N x C per stream (batches carry N x V x ...)."""
        return {name: video_scores(forward_views(self.stream_network(name), batch[key],
                                                 self.evaluation.view_chunk_size))
                for name, (_, key) in self.streams.items()}

    def on_test_epoch_start(self) -> None:
        self.video_test.start()

    def test_step(self, batch: dict[str, Tensor], batch_idx: int) -> None:
        self.video_test.add(batch["index"], batch["label"], self.video_scores(batch))

    def predict_step(self, batch: dict[str, Tensor], batch_idx: int) -> dict[str, Tensor]:
        return {"index": batch["index"], **self.video_scores(batch)}

    def on_test_epoch_end(self) -> None:
        self.test_results = self.video_test.finish(self)

    # Checkpoints.

    def on_load_checkpoint(self, checkpoint: dict[str, Any]) -> None:
        own = self.state_dict()
        wrong = [(key, tuple(value.shape), tuple(own[key].shape)) for key, value in checkpoint["state_dict"].items()
                 if key in own and value.shape != own[key].shape]
        if wrong:
            listed = "; ".join(f"{key}: checkpoint {a}, model {b}" for key, a, b in wrong[:5])
            raise ValueError(
                f"the checkpoint does not fit this model ({listed}). A head trained for another number of "
                f"classes (the checkpoint's: {wrong[-1][1][0]}) needs the network built for it: the "
                "data's class list (model.init_args.num_classes) must match. To fine-tune on another "
                "dataset, start from the weights instead (the network's `weights` setting), whose "
                "classifier is replaced")


class VideoClassifier(StreamsModule):
    """One stream (spatial, temporal, or an I3D/3D network) trained with cross-entropy.

    Args:
        network: a network class (e.g. ``models.ResNetStream``) configured without its
            number of classes; called with ``num_classes`` it maps a batch of inputs to
            N x C logits and offers ``input_spec`` and ``get_classifier`` (the latter only
            for ``backbone_lr_scale`` or ``freeze_backbone``).
        num_classes: classes to predict; linked from the data's class list by the CLI.
        stream: batch key the network reads (``rgb`` or ``flow``); None: its
            ``input_spec.modality``. Also names the scores in the score file (``scores_rgb``).
        init_checkpoint: where training starts: a ``VideoClassifier`` or
            ``MultiTaskClassifier`` checkpoint of another task (e.g. UCF-101's temporal network
            for HMDB-51), all its network but the classifier, loaded when a fit sets up a
            module whose weights come from nowhere yet (a resumed fit or a loaded module keeps
            its own; test and inference never read the file).
        shared: every module's settings (optimizer, scheduler, label_smoothing,
            backbone_lr_scale, freeze_backbone, evaluation): see ``StreamsModule``.
    """

    def __init__(self, network: NetworkBuilder, num_classes: int, stream: str | None = None,
                 init_checkpoint: str | None = None, **shared: Any) -> None:
        built = network(num_classes)
        key = stream_key(built, stream)
        super().__init__({key: ("network", key)}, **shared)
        self.save_hyperparameters(ignore=["network", *NOT_HYPERPARAMETERS])
        self.network = built
        self.init_checkpoint = init_checkpoint
        self.add_metrics({key: num_classes})
        if self.freeze_backbone:
            self.freeze_backbones()

    def setup(self, stage: str) -> None:
        # Lightning restores a resumed fit's checkpoint after setup, so that one wins.
        if stage == "fit" and self.init_checkpoint is not None and self.weights_origin is None:
            load_backbone_weights(self.network, self.init_checkpoint)
