"""The README's quickstart, end to end, as a user runs it: the commands are read from the
README's own text and run verbatim, one by one, in a fresh folder (subprocesses, relative
paths; ``cli.py`` and ``configs/`` linked in, ``pip install`` skipped: the suite runs
installed).

Generate the synthetic dataset, extract its flow, train both streams, test with 25 x 10
views and print the paper's table, recompute it from the score files; then what users rely
on afterwards: a resumed fit continues the step count (and a 2-process DDP test on CPU, which
scored exactly the same videos with the same numbers, until cli.py refused several CPU devices).
"""

import re
import shlex
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch

from lightning_modules.evaluation.scores import load_video_scores

ROOT = Path(__file__).resolve().parents[1]
README = ROOT / "README.md"
CONFIG = str(ROOT / "configs" / "quickstart.yaml")
SCORES = Path("runs/quickstart")  # the experiment folder, beside checkpoints/
LAST = "runs/quickstart/checkpoints/last.ckpt"


def quickstart_commands(readme: str) -> list[list[str]]:
    """The commands of the first bash block under the README's "## Quickstart" heading, as argv lists
    (backslash continuations joined, comments dropped)."""
    section = readme.split("\n## Quickstart", 1)[1].split("\n## ", 1)[0]
    block = re.search(r"```bash\n(.*?)```", section, re.DOTALL)
    assert block, "README.md: no ```bash block in its Quickstart section"
    text = block.group(1).replace("\\\n", " ")
    return [shlex.split(line, comments=True) for line in text.splitlines() if line.strip()]


def test_the_quickstart_is_separate_short_commands():
    commands = quickstart_commands(README.read_text())
    assert [argv[:3] for argv in commands] == [
        ["pip", "install", "-e"], ["python", "-m", "datamodules.synthetic"], ["python", "-m", "flow"],
        ["python", "cli.py", "fit"], ["python", "cli.py", "test"], ["python", "-m", commands[5][2]]]
    assert commands[5][2] == "lightning_modules.evaluation"
    section = README.read_text().split("\n## Quickstart", 1)[1].split("\n## ", 1)[0]
    assert max(len(line) for line in section.splitlines()) <= 120, "a quickstart line a reader has to scroll"


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
def quickstart(tmp_path_factory) -> tuple[Path, dict[str, str]]:
    """The README's quickstart commands, verbatim, one by one, in a fresh folder; the output of each
    (keyed by its module or script and subcommand: "cli.py test", "-m lightning_modules...")."""
    cwd = tmp_path_factory.mktemp("quickstart")
    for name in ("cli.py", "configs"):
        (cwd / name).symlink_to(ROOT / name)
    outputs = {}
    for argv in quickstart_commands(README.read_text()):
        if argv[0] == "pip":
            continue  # the suite runs with the package installed
        assert argv[0] == "python", f"README quickstart: a command that is not python: {shlex.join(argv)}"
        key = " ".join(argv[1:3])
        outputs[key] = run(cwd, *argv[1:])
    return cwd, outputs


@pytest.mark.slow
def test_table_shows_what_each_stream_learned(quickstart) -> None:
    _, outputs = quickstart
    tested = outputs["cli.py test"]
    assert set(table_rows(tested)) == {"spatial", "temporal", "fusion by averaging", "fusion by SVM"}
    grouped = table_rows(next(out for key, out in outputs.items() if key.endswith("lightning_modules.evaluation")))
    # columns: all, appearance classes, motion classes
    spatial, temporal, average = grouped["spatial"], grouped["temporal"], grouped["fusion by averaging"]
    assert temporal[2] > spatial[2], "the temporal stream should win on the motion-only classes"
    assert spatial[1] >= temporal[1], "the spatial stream should be at least as good on appearance-only classes"
    assert average[0] > max(spatial[0], temporal[0]), "fusion should beat both streams"
    assert [row[0] for row in grouped.values()] == [row[0] for row in table_rows(tested).values()]


@pytest.mark.slow
def test_every_test_video_scored_once_with_all_views(quickstart) -> None:
    cwd, _ = quickstart
    scores = load_video_scores(cwd / SCORES / "test_scores.npz")
    testlist = (cwd / "data/synthetic/ucfTrainTestlist/testlist01.txt").read_text().split()
    assert sorted(scores["video_ids"]) == sorted(name.rsplit(".", 1)[0] for name in testlist)
    np.testing.assert_allclose(scores["scores_spatial"].sum(1), 1.0, rtol=1e-5)


@pytest.mark.slow
def test_ddp_on_cpu_gives_the_same_scores(quickstart) -> None:
    cwd, outputs = quickstart
    tested = outputs["cli.py test"]
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


@pytest.mark.slow
def test_resume_continues_the_step_count(quickstart) -> None:
    cwd, _ = quickstart
    saved = torch.load(cwd / LAST, weights_only=True)
    epochs = saved["epoch"] + 1
    cli(cwd, "fit", "--ckpt_path", "last", "--trainer.max_epochs", str(epochs + 1),
        "--trainer.logger.init_args.version", "resumed")
    resumed = torch.load(cwd / LAST, weights_only=True)
    assert resumed["epoch"] == epochs
    assert resumed["global_step"] > saved["global_step"]
