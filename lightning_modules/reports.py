"""W&B reports of a run: confusion matrices, per-class accuracy, and what the network sees.

The callback reads what the modules already keep: ``pl_module.test_results`` (per-video
labels and softmax scores per stream, per group, gathered from every rank by
``on_test_epoch_end``), ``pl_module.input_specs`` (how each batch key was normalised) and
``trainer.datamodule.classes``. With any logger other than a ``WandbLogger`` it does nothing.
"""

from typing import Any

import numpy as np
import pytorch_lightning as pl
from pytorch_lightning.loggers import WandbLogger
from torch import Tensor

from flow.colorwheel import flow_to_color
from models.fusion import average_fusion
from models.input_spec import InputSpec

# wandb's own confusion-matrix chart; its table is given only the non-empty cells, so it
# stays within wandb.Table's row limit for hundreds of classes.
CONFUSION_SPEC = "wandb/confusion_matrix/v1"


def wandb_logger(trainer: pl.Trainer) -> WandbLogger | None:
    return next((logger for logger in trainer.loggers if isinstance(logger, WandbLogger)), None)


def class_names(trainer: pl.Trainer, pl_module: pl.LightningModule, group: str, num_classes: int) -> list[str]:
    """The datamodule's class list (for multi-task: the group's dataset's), else the numbers."""
    datamodule = trainer.datamodule
    names = getattr(pl_module, "dataset_names", None)
    if group and names and group in names and hasattr(datamodule, "datamodules"):
        datamodule = datamodule.datamodules[names.index(group)]
    classes = getattr(datamodule, "classes", None)
    if classes is None or len(classes) != num_classes:
        return [str(i) for i in range(num_classes)]
    return list(classes)


def outputs(results: dict[str, np.ndarray], fusion_weights: Any = None) -> dict[str, np.ndarray]:
    """Scores per stream (``scores_<stream>`` entries), plus their average fusion when the
    module fuses several streams (``fusion_weights``, in stream order)."""
    scores = {key[len("scores_"):]: value for key, value in results.items() if key.startswith("scores_")}
    if len(scores) > 1 and fusion_weights is not None:
        scores["fusion"] = average_fusion(list(scores.values()), fusion_weights)
    return scores


def confusion_chart(labels: np.ndarray, predictions: np.ndarray, classes: list[str], title: str) -> Any:
    import wandb

    counts = np.zeros((len(classes), len(classes)), dtype=np.int64)
    np.add.at(counts, (labels, predictions), 1)
    rows = [[classes[i], classes[j], int(counts[i, j])] for i, j in zip(*np.nonzero(counts))]
    table = wandb.Table(columns=["Actual", "Predicted", "nPredictions"], data=rows)
    fields = {"Actual": "Actual", "Predicted": "Predicted", "nPredictions": "nPredictions"}
    return wandb.plot_table(CONFUSION_SPEC, table, fields, {"title": title})


def per_class_rows(labels: np.ndarray, predictions: dict[str, np.ndarray], classes: list[str]) -> list[list[Any]]:
    """One row per class: name, test videos, then top-1 accuracy per output (None: no videos)."""
    videos = np.bincount(labels, minlength=len(classes))
    correct = {name: np.bincount(labels[pred == labels], minlength=len(classes)) for name, pred in predictions.items()}
    return [[name, int(videos[c]), *(float(hits[c] / videos[c]) if videos[c] else None for hits in correct.values())]
            for c, name in enumerate(classes)]


def rgb_image(x: Tensor, spec: InputSpec) -> np.ndarray:
    """A normalised RGB input, (3, H, W) or (3, T, H, W) (its middle frame), as uint8 (H, W, 3)."""
    if x.ndim == 4:
        x = x[:, x.shape[1] // 2]
    mean, std = (np.asarray(v, dtype=np.float32).reshape(-1, 1, 1) for v in (spec.mean, spec.std))
    image = x.float().cpu().numpy() * std + mean
    return (np.clip(image, 0, 1) * 255).round().astype(np.uint8).transpose(1, 2, 0)


def flow_image(x: Tensor, spec: InputSpec) -> np.ndarray:
    """A normalised flow input in Middlebury colours, uint8 (H, W, 3): the first field of a
    2D stack (2L, H, W) ordered x1..xL, y1..yL, the middle field of a 3D clip (2, T, H, W)."""
    flow = x.float().cpu().numpy()
    stack = flow.ndim == 3
    flow = flow.reshape(2, -1, *flow.shape[-2:])  # (2, L, H, W): x planes, y planes
    mean, std = (np.asarray(v, dtype=np.float32).reshape(-1, 1, 1, 1) for v in (spec.mean, spec.std))
    pixels = (flow * std + mean) / spec.flow_scale  # undo datamodules.inputs.flow_to_input
    field = pixels[:, 0] if stack else pixels[:, pixels.shape[1] // 2]
    return flow_to_color(field.transpose(1, 2, 0))


class WandbReports(pl.Callback):
    """Logs to W&B, when the trainer has a ``WandbLogger``: sample inputs of the first
    training batch, and at the end of ``test`` a confusion matrix and a per-class accuracy
    table for every stream (and the two-stream fusion), per group (multi-task: per dataset).

    Keys follow the metric names: ``test/confusion_matrix`` and ``test/per_class_accuracy``
    for one stream; ``test/<stream>/confusion_matrix`` and one table with an accuracy column
    per output for several; ``test/<dataset>/...`` for multi-task.

    Args:
        samples: inputs of the first training batch to show (RGB frames un-normalised, flow
            in Middlebury colours); 0: none.
    """

    def __init__(self, samples: int = 4) -> None:
        self.samples = samples
        self._shown = False

    def on_train_batch_start(self, trainer: pl.Trainer, pl_module: pl.LightningModule, batch: Any,
                             batch_idx: int) -> None:
        logger = wandb_logger(trainer)
        if self._shown or not self.samples or logger is None or not trainer.is_global_zero:
            return
        self._shown = True
        specs = getattr(pl_module, "input_specs", None) or getattr(trainer.datamodule, "input_specs", {})
        render = {"rgb": rgb_image, "flow": flow_image}
        for key, spec in specs.items():
            if spec is None or key not in batch or spec.modality not in render:
                continue
            inputs = batch[key][: self.samples]
            images = [render[spec.modality](x, spec) for x in inputs]
            captions = [f"label {int(label)}" for label in batch["label"][: len(images)]]
            logger.log_image(f"samples/{key}", images, step=trainer.global_step, caption=captions)

    def on_test_end(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> None:
        logger = wandb_logger(trainer)
        if logger is None or not trainer.is_global_zero:
            return
        import wandb

        media: dict[str, Any] = {}
        for group, results in getattr(pl_module, "test_results", {}).items():
            labelled = results["labels"] >= 0  # unlabelled test videos (-1) have nothing to report
            labels = results["labels"][labelled].astype(np.int64)
            scores = {name: value[labelled] for name, value in
                      outputs(results, getattr(pl_module, "fusion_weights", None)).items()}
            if not len(labels) or not scores:
                continue
            classes = class_names(trainer, pl_module, group, next(iter(scores.values())).shape[1])
            predictions = {name: value.argmax(1) for name, value in scores.items()}
            prefix = f"test/{group}" if group else "test"
            for name, pred in predictions.items():
                key = f"{prefix}/{name}" if len(predictions) > 1 else prefix
                media[f"{key}/confusion_matrix"] = confusion_chart(labels, pred, classes, f"{key} confusion matrix")
            accuracy = ["accuracy"] if len(predictions) == 1 else [f"accuracy/{name}" for name in predictions]
            media[f"{prefix}/per_class_accuracy"] = wandb.Table(
                columns=["class", "videos", *accuracy], data=per_class_rows(labels, predictions, classes))
        if media:
            logger.log_metrics(media, step=trainer.global_step)
