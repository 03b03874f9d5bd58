import numpy as np
import pytest

from models.fusion import SVMFusion, average_fusion

CLASSES = 10


def _softmax(logits):
    e = np.exp(logits - logits.max(axis=1, keepdims=True))
    return e / e.sum(axis=1, keepdims=True)


def _stream(labels, good_classes, rng):
    """Scores that peak at the label for videos of `good_classes`, at a random class otherwise."""
    logits = rng.normal(0.0, 1.0, (len(labels), CLASSES))
    good = np.isin(labels, good_classes)
    target = np.where(good, labels, rng.integers(0, CLASSES, len(labels)))
    logits[np.arange(len(labels)), target] += 2.5
    return _softmax(logits)


def _two_streams(n, rng):
    labels = rng.integers(0, CLASSES, n)
    return labels, [_stream(labels, np.arange(0, 6), rng), _stream(labels, np.arange(4, 10), rng)]


def test_svm_fusion_beats_the_better_stream():
    rng = np.random.default_rng(0)
    train_labels, train = _two_streams(2000, rng)
    test_labels, test = _two_streams(2000, rng)
    single = max((s.argmax(axis=1) == test_labels).mean() for s in test)
    fused = (SVMFusion(C=1.0).fit(train, train_labels).predict(test) == test_labels).mean()
    assert fused > single + 0.05
    assert SVMFusion().fit(train, train_labels).decision_function(test).shape == (2000, CLASSES)


def test_svm_fusion_two_classes_gives_two_columns():
    rng = np.random.default_rng(1)
    labels = rng.integers(0, 2, 50)
    scores = [_softmax(rng.normal(size=(50, 2)) + 3 * np.eye(2)[labels]) for _ in range(2)]
    fusion = SVMFusion().fit(scores, labels)
    assert fusion.decision_function(scores).shape == (50, 2)
    assert (fusion.predict(scores) == labels).mean() > 0.9


def test_average_fusion_is_a_distribution():
    rng = np.random.default_rng(2)
    scores = [_softmax(rng.normal(size=(20, CLASSES))) for _ in range(2)]
    for weights in (None, (1.0, 1.5)):
        fused = average_fusion(scores, weights)
        assert fused.shape == (20, CLASSES)
        assert (fused >= 0).all() and (fused <= 1).all()
        np.testing.assert_allclose(fused.sum(axis=1), 1.0)
    np.testing.assert_allclose(average_fusion(scores, (1, 0)), scores[0])
    with pytest.raises(ValueError):
        average_fusion([scores[0], scores[1][:, :5]])
    with pytest.raises(ValueError):
        average_fusion(scores, (1.0,))
