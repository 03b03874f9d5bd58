"""The two-stream paper's table from per-video score files: spatial, temporal, fusions.

``python -m lightning_modules.fusion_table TEST.npz [--svm-train TRAIN.npz] [--weights 1 1.5]
[--class-groups synthetic.json]`` recomputes, from the files a two-stream test wrote, the
table it printed, optionally with one column per group of classes (the synthetic
dataset's "motion" and "appearance" classes, say). Streams trained and tested apart
fuse the same way: give the two score files' streams with ``--streams``.
"""

import argparse
import json
from collections.abc import Sequence
from pathlib import Path

import numpy as np

from lightning_modules.video_scores import load_video_scores
from models.fusion import SVMFusion, average_fusion

Table = dict[str, np.ndarray | None]  # row name -> per-video predicted class (None: not available)


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
                    svm_decision: np.ndarray | None = None) -> dict[str, np.ndarray | None]:
    """Per-row scores (N x C) of the paper's table."""
    return {
        "spatial": spatial,
        "temporal": temporal,
        "fusion by averaging": average_fusion([spatial, temporal], weights),
        "fusion by SVM": svm_decision,
    }


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


def main(args: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(prog="python -m lightning_modules.fusion_table", description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("test", type=Path, help="test score file (.npz) of a two-stream test")
    parser.add_argument("--svm-train", type=Path, help="the training videos' score file, for SVM fusion")
    parser.add_argument("--streams", nargs=2, default=["spatial", "temporal"], metavar=("SPATIAL", "TEMPORAL"),
                        help="the score arrays to fuse (scores_<name> in the files)")
    parser.add_argument("--weights", nargs=2, type=float, default=[1.0, 1.0], help="averaging weights")
    parser.add_argument("--svm-c", type=float, default=1.0, help="C of the linear SVM")
    parser.add_argument("--class-groups", type=Path, help="JSON with classes and kinds (synthetic.json)")
    options = parser.parse_args(args)
    test = load_video_scores(options.test)
    keys = [f"scores_{name}" for name in options.streams]
    missing = [key for key in keys if key not in test]
    if missing:
        parser.error(f"{options.test} has no {', '.join(missing)}; it holds {', '.join(sorted(test))}")
    streams = [test[key] for key in keys]
    decision = None
    if options.svm_train is not None:
        train = load_video_scores(options.svm_train)
        decision = svm_fused_decision([train[key] for key in keys], train["labels"], streams, options.svm_c)
    rows = two_stream_rows(*streams, options.weights, decision)
    groups = class_groups(options.class_groups) if options.class_groups else None
    print(format_table(rows, test["labels"], groups))


if __name__ == "__main__":
    main()
