"""Late fusion of the streams' per-video class scores (two-stream paper, section 6).

Both take one (N, C) array of softmax scores per stream, in the same video order:
averaging, or a linear SVM trained on the L2-normalised scores stacked as features.
"""

from collections.abc import Sequence

import numpy as np
from sklearn.svm import LinearSVC


def _stack(scores: Sequence[np.ndarray]) -> list[np.ndarray]:
    arrays = [np.asarray(s, dtype=np.float64) for s in scores]
    if not arrays or any(a.ndim != 2 or a.shape != arrays[0].shape for a in arrays):
        raise ValueError(f"expected one (N, C) array per stream, all alike; got {[a.shape for a in arrays]}")
    return arrays


def average_fusion(scores: Sequence[np.ndarray], weights: Sequence[float] | None = None) -> np.ndarray:
    """Weighted average of the streams' softmax scores, (N, C); weights default to equal.

    The weights are normalised to sum to 1, so probabilities stay probabilities
    (TSN's spatial:temporal 1:1.5 is ``weights=(1, 1.5)``).
    """
    arrays = _stack(scores)
    w = np.ones(len(arrays)) if weights is None else np.asarray(weights, dtype=np.float64)
    if w.shape != (len(arrays),) or (w < 0).any() or w.sum() <= 0:
        raise ValueError(f"need one non-negative weight per stream, got {weights}")
    return sum(wi * a for wi, a in zip(w / w.sum(), arrays))


class SVMFusion:
    """A linear SVM (one-vs-rest) on the streams' L2-normalised softmax scores, concatenated.

    Args:
        C: the SVM's regularisation parameter (larger: less regularisation).
    """

    def __init__(self, C: float = 1.0) -> None:
        self.svm = LinearSVC(C=C)

    @staticmethod
    def features(scores: Sequence[np.ndarray]) -> np.ndarray:
        """Each stream's rows scaled to unit L2 norm, streams side by side: (N, S * C)."""
        arrays = _stack(scores)
        normed = [a / np.maximum(np.linalg.norm(a, axis=1, keepdims=True), 1e-12) for a in arrays]
        return np.concatenate(normed, axis=1)

    def fit(self, scores: Sequence[np.ndarray], labels: np.ndarray) -> "SVMFusion":
        self.svm.fit(self.features(scores), np.asarray(labels))
        return self

    def decision_function(self, scores: Sequence[np.ndarray]) -> np.ndarray:
        """Per-class SVM scores, (N, number of classes seen in ``fit``)."""
        decision = self.svm.decision_function(self.features(scores))
        # scikit-learn returns one column for two classes; give every class its own.
        return np.stack([-decision, decision], axis=1) if decision.ndim == 1 else decision

    def predict(self, scores: Sequence[np.ndarray]) -> np.ndarray:
        return self.svm.classes_[self.decision_function(scores).argmax(axis=1)]
