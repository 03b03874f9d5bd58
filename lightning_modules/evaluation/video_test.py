"""A module's per-video test: scores collected per group of videos, gathered once across ranks,
test metrics logged on the gathered arrays, and the ``.npz`` score files.

Kept out of the LightningModules, which only say how a batch of test videos is scored
(their ``video_scores``). A group is the videos scored and saved together (``Group``): ``""``
for one dataset (``test_scores.npz``, rows named by the datamodule's ``test_video_ids``), a
dataset's name for ``MultiTaskClassifier`` (``test_scores_<name>.npz``; the d-th group's rows
named by ``test_video_ids[d]``, the multi-dataset datamodule keeping one list per dataset),
``svm_train`` for the training videos a two-stream test scores for its SVM
(``test_scores_svm_train.npz``, rows named by ``train_video_ids``, no test metrics). The file
format is ``lightning_modules.evaluation.scores``'s. Every rank runs ``finish`` (the gather is
collective, and so is finding ``trainer.log_dir``); only rank zero writes.
"""

from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pytorch_lightning as pl
from torch import Tensor

from lightning_modules.metrics import score_metrics
from lightning_modules.evaluation.scores import VideoScoreCollector, save_video_scores

Results = dict[str, np.ndarray]  # index, labels, scores_<stream>: see lightning_modules.evaluation.scores


def log_test_metrics(module: pl.LightningModule, scores: np.ndarray, labels: np.ndarray,
                     *names: str) -> dict[str, float]:
    """Log ``test/<names>/acc`` etc. of complete per-video scores (identical on every rank)."""
    if not len(labels):
        return {}
    values = score_metrics(scores, labels, prefix="/".join(("test", *names, "")))
    module.log_dict(values)
    return values


def video_ids(trainer: pl.Trainer, results: Results, attribute: str = "test_video_ids",
              dataset: int | None = None) -> list[str]:
    """The datamodule's ``attribute`` (``test_video_ids``, ``train_video_ids``: ids in dataset order),
    its ``dataset``-th list for a datamodule with one per dataset; the indices as text without it."""
    ids = getattr(trainer.datamodule, attribute, None)
    if ids is None:
        return [str(i) for i in range(int(results["index"].max()) + 1)]
    return list(ids if dataset is None else ids[dataset])


@dataclass(frozen=True)
class Group:
    """Videos scored and saved together.

    Args:
        name: "" for the one dataset's test videos (the score file itself); else the name
            the log keys and the score file (``<stem>_<name>.npz``) take.
        ids: the datamodule's attribute naming the rows (``test_video_ids``, ``train_video_ids``).
        dataset: which of the datamodule's lists of ids (one per dataset: ``MultiDataModule``);
            None: its one list.
        metrics: log test metrics of the scores (not for training videos).
    """

    name: str = ""
    ids: str = "test_video_ids"
    dataset: int | None = None
    metrics: bool = True


class VideoTest:
    """``start`` at the test epoch's start, ``add`` each batch's per-video scores, ``finish`` at its end.

    Args:
        score_file: per-video test scores (``.npz``), relative to ``trainer.log_dir``
            (under cli.py: the experiment's folder); a named
            group's file gets ``_<group>`` before the suffix; None: not written.
    """

    def __init__(self, score_file: str | None = "test_scores.npz") -> None:
        self.score_file = score_file
        # Where a relative score_file goes; None: trainer.log_dir. cli.py sets the experiment's
        # folder, because a logger's log_dir can be shared by experiments (W&B's is runs/).
        self.directory: Path | None = None
        self.groups: dict[str, Group] = {}
        self.collectors: dict[str, VideoScoreCollector] = {}

    def start(self, groups: Sequence[str | Group] = ("",)) -> None:
        """A fresh collector per group; a name stands for the test videos of the datamodule's
        dataset at its position ("" alone: the one dataset's)."""
        self.groups = {}
        for position, group in enumerate(groups):
            if isinstance(group, str):
                group = Group(group, dataset=position if group else None)
            self.groups[group.name] = group
        self.collectors = {name: VideoScoreCollector() for name in self.groups}

    def add(self, index: Tensor, labels: Tensor, scores: dict[str, Tensor], group: str = "") -> None:
        """Per-video ``scores`` (stream -> N x C) of the videos at ``index`` (dataset positions)."""
        self.collectors[group].add(index, labels, scores)

    def finish(self, module: pl.LightningModule) -> dict[str, Results]:
        """Gather every rank's videos, log the metrics once over all of them (per group and
        stream), write each group's score file; the gathered results per group."""
        trainer = module.trainer
        results = {name: collector.gather() for name, collector in self.collectors.items()}
        for name, gathered in results.items():
            group = self.groups[name]
            streams = [key[len("scores_"):] for key in gathered if key.startswith("scores_")]
            for stream in streams if group.metrics else ():
                names = ([name] if name else []) + ([stream] if len(streams) > 1 else [])
                log_test_metrics(module, gathered[f"scores_{stream}"], gathered["labels"], *names)
            path = self.score_path(trainer, name)
            if path is not None and gathered["index"].size and trainer.is_global_zero:
                save_video_scores(path, gathered, video_ids(trainer, gathered, group.ids, group.dataset))
        return results

    def score_path(self, trainer: pl.Trainer, group: str = "") -> Path | None:
        """Where ``group``'s scores go; call it on every rank (``trainer.log_dir`` broadcasts)."""
        if self.score_file is None:
            return None
        path = Path(self.score_file)
        if group:
            path = path.with_name(f"{path.stem}_{group}{path.suffix}")
        if path.is_absolute():
            return path
        if self.directory is not None:
            return Path(self.directory) / path
        return Path(trainer.log_dir or trainer.default_root_dir) / path
