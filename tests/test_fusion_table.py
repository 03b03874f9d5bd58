import json

import numpy as np
import pytest

from lightning_modules.evaluation.fusion_table import (
    accuracy,
    class_groups,
    format_table,
    fusion_rows,
    main,
    svm_fused_decision,
    two_stream_rows,
)
from lightning_modules.evaluation.scores import save_video_scores


def one_hot(predicted: list[int], classes: int = 4) -> np.ndarray:
    return np.eye(classes)[predicted] * 0.7 + 0.3 / classes


def test_groups_split_the_accuracy_by_class_kind(tmp_path, capsys):
    labels = np.array([0, 1, 2, 3])
    spatial = one_hot([0, 1, 3, 2])  # right on classes 0, 1 (appearance)
    temporal = one_hot([1, 0, 2, 3])  # right on classes 2, 3 (motion)
    info = {"classes": ["A", "B", "C", "D"], "kinds": {"A": "appearance", "B": "appearance", "C": "motion", "D": "motion"}}
    (tmp_path / "synthetic.json").write_text(json.dumps(info))
    groups = class_groups(tmp_path / "synthetic.json")
    assert groups == {"appearance classes": [0, 1], "motion classes": [2, 3]}
    assert accuracy(spatial, labels, groups["appearance classes"]) == 1.0
    assert accuracy(temporal, labels, groups["appearance classes"]) == 0.0

    results = {"index": np.arange(4), "labels": labels, "scores_spatial": spatial, "scores_temporal": temporal}
    path = save_video_scores(tmp_path / "scores.npz", results, [f"v{i}" for i in range(4)])
    main([str(path), "--class-groups", str(tmp_path / "synthetic.json")])
    lines = capsys.readouterr().out.splitlines()
    assert lines[0].split() == ["top-1", "appearance", "classes", "motion", "classes"]
    assert lines[1].split() == ["spatial", "50.0", "100.0", "0.0"]
    assert lines[2].split() == ["temporal", "50.0", "0.0", "100.0"]
    assert lines[4].split()[-3:] == ["n/a", "n/a", "n/a"]


def test_svm_needs_two_classes_and_never_predicts_unseen_ones():
    train = [one_hot([0, 1, 0, 1]), one_hot([0, 1, 0, 1])]
    assert svm_fused_decision(train, np.array([0, 0, 0, 0]), train) is None
    decision = svm_fused_decision(train, np.array([0, 1, 0, 1]), [one_hot([2, 3]), one_hot([2, 3])])
    assert set(decision.argmax(1)) <= {0, 1}


def test_missing_stream_is_a_clear_error(tmp_path):
    results = {"index": np.arange(2), "labels": np.array([0, 1]), "scores_rgb": one_hot([0, 1])}
    path = save_video_scores(tmp_path / "scores.npz", results, ["a", "b"])
    with pytest.raises(SystemExit):
        main([str(path)])
    rows = two_stream_rows(one_hot([0]), one_hot([1]))
    assert "fusion by SVM" in format_table(rows, np.array([0]))


@pytest.mark.parametrize("content", [None, b"half a zip"], ids=["missing", "corrupt"])
def test_an_unreadable_score_file_is_one_line_naming_it(tmp_path, capsys, content):
    path = tmp_path / "scores.npz"
    if content is not None:
        path.write_bytes(content)
    with pytest.raises(SystemExit) as caught:
        main([str(path)])
    err = capsys.readouterr().err.strip().splitlines()
    assert caught.value.code == 2 and f"error: {path}: not a readable score file (" in err[-1]
    assert "Traceback" not in "\n".join(err)


def test_the_table_of_a_test_and_of_its_files_is_one_computation(tmp_path, capsys):
    """fusion_rows: what a two-stream test prints and what the command prints from its files."""
    labels = np.array([0, 1, 0, 1])
    test = {"index": np.arange(4), "labels": labels, "scores_spatial": one_hot([0, 1, 1, 1]),
            "scores_temporal": one_hot([0, 0, 0, 1])}
    train = {"index": np.arange(4), "labels": labels, "scores_spatial": one_hot([0, 1, 0, 1]),
             "scores_temporal": one_hot([1, 1, 0, 1])}
    rows = fusion_rows(test, train, weights=(1.0, 1.5))
    averaged = (test["scores_spatial"] + 1.5 * test["scores_temporal"]) / 2.5
    np.testing.assert_allclose(rows["fusion by averaging"], averaged)
    paths = [save_video_scores(tmp_path / f"{name}.npz", scores, list("abcd"))
             for name, scores in (("t", test), ("s", train))]
    main([str(paths[0]), "--svm-train", str(paths[1]), "--weights", "1", "1.5"])
    assert capsys.readouterr().out.rstrip("\n") == format_table(rows, labels)
    assert fusion_rows(test, {"index": np.zeros(0, np.int64), "labels": np.zeros(0, np.int64)})["fusion by SVM"] is None
    assert not list(tmp_path.glob("*.tmp"))  # score files are written under a temporary name, renamed when complete
