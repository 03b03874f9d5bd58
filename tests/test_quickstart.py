"""The README's quickstart, end to end, as a user runs it (subprocesses, relative paths).

Generate the synthetic dataset, extract its flow, train both streams, test with 25 x 10
views and print the paper's table; then what users rely on afterwards: the saved score
files reproduce the table, a 2-process DDP test on CPU scores exactly the same videos
with the same numbers, and a resumed fit continues the step count.
"""

import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch

from lightning_modules.video_scores import load_video_scores

ROOT = Path(__file__).resolve().parents[1]
CONFIG = str(ROOT / "configs" / "quickstart.yaml")
SCORES = Path("runs/quickstart")  # the experiment folder, beside checkpoints/
LAST = "runs/quickstart/checkpoints/last.ckpt"

pytestmark = pytest.mark.slow


def run(cwd: Path, *args: str) -> str:
    result = subprocess.run([sys.executable, *args], cwd=cwd, capture_output=True, text=True, timeout=900)
    assert result.returncode == 0, f"{' '.join(args)} failed:\n{result.stdout[-3000:]}\n{result.stderr[-3000:]}"
    return result.stdout


def cli(cwd: Path, subcommand: str, *args: str) -> str:
    return run(cwd, str(ROOT / "cli.py"), subcommand, "--config", CONFIG, "--trainer.enable_progress_bar", "false",
               *args)


def table_rows(text: str) -> dict[str, list[float]]:
    rows = {}
    for line in text.splitlines():
        for name in ("spatial", "temporal", "fusion by averaging", "fusion by SVM"):
            if line.startswith(name + " "):
                rows[name] = [float(cell) for cell in line[len(name):].split()]
    return rows


@pytest.fixture(scope="module")
def quickstart(tmp_path_factory) -> tuple[Path, str]:
    """The README's quickstart command, step by step, in a fresh folder."""
    cwd = tmp_path_factory.mktemp("quickstart")
    run(cwd, "-m", "datamodules.synthetic", "data/synthetic", "--layout", "ucf101", "--videos-per-class", "12")
    run(cwd, "-m", "flow", "extract", "data/synthetic/UCF-101", "data/synthetic/flow", "--algorithm", "dis",
        "--short-side", "128", "--workers", "2", "--no-progress")
    cli(cwd, "fit")
    tested = cli(cwd, "test", "--ckpt_path", LAST)
    return cwd, tested


def test_table_shows_what_each_stream_learned(quickstart) -> None:
    cwd, tested = quickstart
    assert set(table_rows(tested)) == {"spatial", "temporal", "fusion by averaging", "fusion by SVM"}
    grouped = table_rows(run(cwd, "-m", "lightning_modules.fusion_table", str(SCORES / "test_scores.npz"),
                             "--svm-train", str(SCORES / "test_scores_svm_train.npz"),
                             "--class-groups", "data/synthetic/synthetic.json"))
    # columns: all, appearance classes, motion classes
    spatial, temporal, average = grouped["spatial"], grouped["temporal"], grouped["fusion by averaging"]
    assert temporal[2] > spatial[2], "the temporal stream should win on the motion-only classes"
    assert spatial[1] >= temporal[1], "the spatial stream should be at least as good on appearance-only classes"
    assert average[0] > max(spatial[0], temporal[0]), "fusion should beat both streams"
    assert [row[0] for row in grouped.values()] == [row[0] for row in table_rows(tested).values()]


def test_every_test_video_scored_once_with_all_views(quickstart) -> None:
    cwd, _ = quickstart
    scores = load_video_scores(cwd / SCORES / "test_scores.npz")
    testlist = (cwd / "data/synthetic/ucfTrainTestlist/testlist01.txt").read_text().split()
    assert sorted(scores["video_ids"]) == sorted(name.rsplit(".", 1)[0] for name in testlist)
    np.testing.assert_allclose(scores["scores_spatial"].sum(1), 1.0, rtol=1e-5)


def test_ddp_on_cpu_gives_the_same_scores(quickstart) -> None:
    cwd, tested = quickstart
    single = load_video_scores(cwd / SCORES / "test_scores.npz")
    ddp = cli(cwd, "test", "--ckpt_path", LAST, "--trainer.devices", "2", "--trainer.strategy", "ddp",
              "--trainer.logger.init_args.version", "ddp", "--experiment", "quickstart_ddp")
    scores = load_video_scores(cwd / "runs/quickstart_ddp/test_scores.npz")
    assert scores["video_ids"].tolist() == single["video_ids"].tolist()
    for key in ("labels", "index"):
        np.testing.assert_array_equal(scores[key], single[key])
    for key in ("scores_spatial", "scores_temporal"):
        np.testing.assert_allclose(scores[key], single[key], atol=1e-5)
    assert table_rows(ddp) == table_rows(tested)


def test_resume_continues_the_step_count(quickstart) -> None:
    cwd, _ = quickstart
    saved = torch.load(cwd / LAST, weights_only=True)
    epochs = saved["epoch"] + 1
    cli(cwd, "fit", "--ckpt_path", "last", "--trainer.max_epochs", str(epochs + 1),
        "--trainer.logger.init_args.version", "resumed")
    resumed = torch.load(cwd / LAST, weights_only=True)
    assert resumed["epoch"] == epochs
    assert resumed["global_step"] > saved["global_step"]
