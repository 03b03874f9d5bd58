"""The accuracies the papers report: top-1, top-5 and mean class accuracy.

Mean class accuracy is the unweighted mean of the per-class recalls
(``MulticlassAccuracy(average="macro")``); UCF-101 and HMDB-51 are nearly balanced,
Kinetics less so.
"""

import numpy as np
import torch
from torchmetrics import MetricCollection
from torchmetrics.classification import MulticlassAccuracy


def classification_metrics(num_classes: int, prefix: str = "", *, sync_on_compute: bool = True) -> MetricCollection:
    """``{prefix}acc``, ``{prefix}acc_top5`` and ``{prefix}mean_class_acc`` over (N, C) scores.

    Args:
        num_classes: classes C of the scores.
        prefix: prepended to every key (``"val/"``, ``"test/spatial/"``).
        sync_on_compute: reduce the states across processes on ``compute``; False for
            results that every rank already holds in full (gathered test scores).
    """
    kwargs = {"num_classes": num_classes, "sync_on_compute": sync_on_compute}
    return MetricCollection(
        {
            "acc": MulticlassAccuracy(top_k=1, average="micro", **kwargs),
            "acc_top5": MulticlassAccuracy(top_k=min(5, num_classes), average="micro", **kwargs),
            "mean_class_acc": MulticlassAccuracy(top_k=1, average="macro", **kwargs),
        },
        prefix=prefix,
    )


def score_metrics(scores: np.ndarray, labels: np.ndarray, prefix: str = "") -> dict[str, float]:
    """The collection's values on complete (N, C) per-video scores, computed once, locally."""
    metrics = classification_metrics(scores.shape[1], prefix, sync_on_compute=False)
    metrics.update(torch.as_tensor(scores, dtype=torch.float32), torch.as_tensor(labels, dtype=torch.long))
    return {key: value.item() for key, value in metrics.compute().items()}
