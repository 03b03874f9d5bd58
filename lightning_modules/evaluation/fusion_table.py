"""The two-stream paper's table from per-video score files: spatial, temporal, fusions.

``python -m lightning_modules.evaluation TEST.npz [--svm-train TRAIN.npz] [--weights 1 1.5]
[--class-groups synthetic.json]`` recomputes, from the files a two-stream test wrote, the
table it printed, optionally with one column per group of classes (the synthetic
dataset's "motion" and "appearance" classes, say). Streams trained and tested apart
fuse the same way: give the two score files' streams with ``--streams``.
"""

import argparse
import json
import zipfile
from collections.abc import Sequence
from pathlib import Path

import numpy as np

from lightning_modules.evaluation.scores import load_video_scores
from models.fusion import SVMFusion, average_fusion

Scores = dict[str, np.ndarray]  # gathered results: index, labels, scores_<stream> (lightning_modules.evaluation.scores)
Table = dict[str, np.ndarray | None]  # row name -> per-video scores, N x C (None: not available)


def svm_fused_decision(train: Sequence[np.ndarray], train_labels: np.ndarray, test: Sequence[np.ndarray],
                       c: float = 1.0) -> np.ndarray | None:
    """Linear-SVM fusion fitted on the training videos' scores, as N x C decision values.

    Classes absent from the training scores never win (a large negative decision, not
    -inf, which the metrics would turn into NaN). None when the training scores
    hold fewer than two classes (nothing to fit).
    """
    if len(np.unique(train_labels)) < 2:
        return None
    svm = SVMFusion(c).fit(train, train_labels)
    decision = np.full(test[0].shape, -1e9)
    decision[:, svm.svm.classes_] = svm.decision_function(test)
    return decision


def two_stream_rows(spatial: np.ndarray, temporal: np.ndarray, weights: Sequence[float] = (1.0, 1.0),
                    svm_decision: np.ndarray | None = None) -> Table:
    """Per-row scores (N x C) of the paper's table."""
    return {
        "spatial": spatial,
        "temporal": temporal,
        "fusion by averaging": average_fusion([spatial, temporal], weights),
        "fusion by SVM": svm_decision,
    }


def fusion_rows(test: Scores, svm_train: Scores | None, streams: Sequence[str] = ("spatial", "temporal"),
                weights: Sequence[float] = (1.0, 1.0), svm_c: float = 1.0) -> Table:
    """The paper's table of gathered test results (``scores_<stream>`` per video): the two
    streams, their weighted average and, with the training videos' results, the SVM fusion.

    The one computation behind a two-stream test's table and this command's."""
    spatial, temporal = (test[f"scores_{name}"] for name in streams)
    decision = None
    if svm_train is not None and svm_train["index"].size:
        decision = svm_fused_decision([svm_train[f"scores_{name}"] for name in streams], svm_train["labels"],
                                      [spatial, temporal], svm_c)
    return two_stream_rows(spatial, temporal, weights, decision)


def accuracy(scores: np.ndarray, labels: np.ndarray, classes: Sequence[int] | None = None) -> float:
    """Top-1 accuracy, over the videos of ``classes`` only when given."""
    keep = np.isin(labels, classes) if classes is not None else np.ones(len(labels), bool)
    return float((scores[keep].argmax(1) == labels[keep]).mean()) if keep.any() else float("nan")


def format_table(rows: dict[str, np.ndarray | None], labels: np.ndarray,
                 groups: dict[str, Sequence[int]] | None = None) -> str:
    """Top-1 accuracy in percent, one row per stream or fusion, one column per class group."""
    columns = {"top-1": None, **(groups or {})}
    width = max(map(len, rows))
    lines = [f"{'':<{width}}" + "".join(f"  {name:>10}" for name in columns)]
    for name, scores in rows.items():
        cells = ["n/a" if scores is None else f"{100 * accuracy(scores, labels, classes):.1f}"
                 for classes in columns.values()]
        lines.append(f"{name:<{width}}" + "".join(f"  {cell:>10}" for cell in cells))
    return "\n".join(lines)


def class_groups(path: Path | str) -> dict[str, list[int]]:
    """Groups of class indices from a JSON file with ``classes`` (index order) and ``kinds``
    (class -> group), as the synthetic dataset's ``synthetic.json``."""
    info = json.loads(Path(path).read_text())
    groups: dict[str, list[int]] = {}
    for index, name in enumerate(info["classes"]):
        groups.setdefault(f"{info['kinds'][name]} classes", []).append(index)
    return groups


def read_scores(parser: argparse.ArgumentParser, path: Path, streams: Sequence[str]) -> Scores:
    """A score file with the ``scores_<stream>`` of ``streams``; else the parser's one-line error naming it."""
    try:
        scores = load_video_scores(path)
    except (OSError, ValueError, zipfile.BadZipFile) as error:
        parser.error(f"{path}: not a readable score file ({error})")
    missing = [f"scores_{name}" for name in streams if f"scores_{name}" not in scores]
    if missing:
        parser.error(f"{path} has no {', '.join(missing)}; it holds {', '.join(sorted(scores))}")
    return scores


def main(args: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(prog="python -m lightning_modules.evaluation", description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("test", type=Path, help="test score file (.npz) of a two-stream test")
    parser.add_argument("--svm-train", type=Path, help="the training videos' score file, for SVM fusion")
    parser.add_argument("--streams", nargs=2, default=["spatial", "temporal"], metavar=("SPATIAL", "TEMPORAL"),
                        help="the score arrays to fuse (scores_<name> in the files)")
    parser.add_argument("--weights", nargs=2, type=float, default=[1.0, 1.0], help="averaging weights")
    parser.add_argument("--svm-c", type=float, default=1.0, help="C of the linear SVM")
    parser.add_argument("--class-groups", type=Path, help="JSON with classes and kinds (synthetic.json)")
    options = parser.parse_args(args)
    test = read_scores(parser, options.test, options.streams)
    svm_train = read_scores(parser, options.svm_train, options.streams) if options.svm_train is not None else None
    rows = fusion_rows(test, svm_train, options.streams, options.weights, options.svm_c)
    groups = class_groups(options.class_groups) if options.class_groups else None
    print(format_table(rows, test["labels"], groups))

