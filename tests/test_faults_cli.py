"""Faults a user meets with ``cli.py``: logs that must survive every later run, checkpoint files
that are not checkpoints, trainer settings that cannot work, Ctrl-C and SIGTERM.

Real runs on the tiny synthetic dataset: a quickstart fit with its own CSV logger, then
tests, resumed fits and refusals in the same process or in real subprocesses.
"""

import resource
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
import torch

from cli import cli_main
from tests.test_checkpoints import bad_copies
from tests.test_cli import ROOT, experiment_config, refusal
from tests.test_configs import tiny_config


@pytest.fixture(scope="module")
def fitted(ucf101_tiny, tmp_path_factory) -> tuple[Path, str, Path]:
    """The quickstart fitted for 2 epochs: its folder, config, and a copy of its last.ckpt."""
    folder = tmp_path_factory.mktemp("fitted")
    config = str(experiment_config("quickstart", {"UCF101DataModule": ucf101_tiny}, folder))
    cli_main(["fit", "--config", config])
    saved = folder / "saved" / "last.ckpt"
    saved.parent.mkdir()
    shutil.copy(folder / "runs" / "quickstart" / "checkpoints" / "last.ckpt", saved)
    return folder, config, saved


def snapshot(folder: Path) -> dict[Path, tuple[int, int]]:
    return {path: (path.stat().st_size, path.stat().st_mtime_ns) for path in folder.rglob("*")}


# Item 1: no run deletes another's logs.

@pytest.mark.slow
def test_test_a_failed_test_and_a_resumed_fit_keep_the_fits_logs(fitted) -> None:
    folder, config, _ = fitted
    logs = folder / "runs" / "quickstart"
    (fit_log,) = logs.glob("fit-*/metrics.csv")
    rows = fit_log.read_text()
    assert len(rows.splitlines()) >= 3  # a header and both epochs

    before = snapshot(logs)
    assert "missing.ckpt: no such file" in refusal(["test", "--config", config, "--ckpt_path",
                                                    str(folder / "missing.ckpt")])
    assert snapshot(logs) == before, "a test that never ran touched the experiment's files"

    cli_main(["test", "--config", config, "--ckpt_path", "last"])
    cli_main(["fit", "--config", config, "--ckpt_path", "last", "--trainer.max_epochs", "3"])
    assert fit_log.read_text() == rows
    (test_log,) = logs.glob("test-*/metrics.csv")
    assert "test/fusion_avg/acc" in test_log.read_text()
    resumed = [path for path in logs.glob("fit-*/metrics.csv") if path != fit_log]
    assert len(resumed) == 1 and resumed[0].read_text().count("\n") >= 2


# Item 4: a checkpoint file that is not one.

def run_cli(folder: Path, *args: str) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, str(ROOT / "cli.py"), *args], cwd=folder, capture_output=True,
                          text=True, timeout=600)


def one_error_line(process: subprocess.CompletedProcess) -> str:
    assert process.returncode == 1, process.stderr[-3000:]
    assert "Traceback" not in process.stderr, process.stderr[-3000:]
    (line,) = [line for line in process.stderr.splitlines() if line.startswith("error:")]
    return line


@pytest.mark.slow
def test_bad_checkpoint_files_are_one_line_naming_the_file(fitted) -> None:
    folder, config, saved = fitted
    files = bad_copies(saved)
    line = one_error_line(run_cli(folder, "test", "--config", config, "--ckpt_path", str(files["truncated"])))
    assert line.startswith(f"error: --ckpt_path {files['truncated']}: is truncated")
    line = one_error_line(run_cli(folder, "fit", "--config", config, "--ckpt_path", str(files["text"])))
    assert line.startswith(f"error: --ckpt_path {files['text']}: is a text file")
    for name, words in [("empty", "is empty"), ("folder", "is a folder"), ("weights_only", "cannot resume")]:
        stage = "fit" if name == "weights_only" else "test"
        message = refusal([stage, "--config", config, "--ckpt_path", str(files[name]), "--experiment", "bad"])
        assert message.startswith(f"error: --ckpt_path {files[name]}: ") and words in message, message
    assert not (folder / "runs" / "bad").exists()


# Item 5: trainer settings that cannot work, and a fit that trains nothing.

@pytest.mark.skipif(torch.cuda.is_available(), reason="refuses a GPU accelerator only where there is no GPU")
def test_a_missing_gpu_is_refused(ucf101_tiny, tmp_path) -> None:
    config = str(tiny_config("quickstart", {"UCF101DataModule": ucf101_tiny}, tmp_path))
    message = refusal(["fit", "--config", config, "--trainer.accelerator", "gpu"])
    assert message.startswith("error: --trainer.accelerator gpu: no CUDA GPU") and "\n" not in message
    assert not (tmp_path / "runs").exists()


@pytest.mark.slow
def test_a_fit_without_a_logger_trains_and_one_that_trains_nothing_fails(fitted, ucf101_tiny, tmp_path) -> None:
    _, config, saved = fitted
    resumed = cli_main(["fit", "--config", config, "--ckpt_path", str(saved), "--trainer.max_epochs", "3",
                        "--trainer.logger", "false", "--experiment", "no_logger"])
    assert resumed.trainer.current_epoch == 3 and not resumed.trainer.loggers
    message = refusal(["fit", "--config", config, "--ckpt_path", str(saved), "--experiment", "done"])
    assert message.startswith("error: fit trained on no batch") and "max_epochs=2" in message
    empty = str(tiny_config("quickstart", {"UCF101DataModule": ucf101_tiny}, tmp_path))
    message = refusal(["fit", "--config", empty, "--trainer.fast_dev_run", "false",
                       "--trainer.limit_train_batches", "0", "--trainer.max_epochs", "1"])
    assert message.startswith("error: fit trained on no batch")


# Ctrl-C and SIGTERM.

@pytest.mark.slow
def test_ctrl_c_and_sigterm_stop_a_fit_with_one_line_and_a_last_checkpoint(fitted) -> None:
    """Two real fits at once, one stopped by each signal once its first epoch is saved."""
    folder, config, _ = fitted
    signals = {"Ctrl-C (SIGINT)": (signal.SIGINT, 130), "SIGTERM": (signal.SIGTERM, 143)}
    last = {name: folder / "runs" / f"stopped_{signum}" / "checkpoints" / "last.ckpt"
            for name, (signum, _) in signals.items()}
    # A shell's background job ignores SIGINT, and the child would inherit that: a terminal's does not.
    processes = {name: subprocess.Popen([sys.executable, str(ROOT / "cli.py"), "fit", "--config", config,
                                         "--experiment", f"stopped_{signum}", "--trainer.max_epochs", "1000"],
                                        cwd=folder, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True,
                                        preexec_fn=lambda: signal.signal(signal.SIGINT, signal.SIG_DFL))
                 for name, (signum, _) in signals.items()}
    try:
        deadline = time.monotonic() + 300
        waiting = set(signals)
        while waiting and time.monotonic() < deadline:
            for name in list(waiting):
                if last[name].is_file() or processes[name].poll() is not None:
                    processes[name].send_signal(signals[name][0])
                    waiting.discard(name)
            time.sleep(0.5)
        stderr = {name: process.communicate(timeout=120)[1] for name, process in processes.items()}
    finally:
        for process in processes.values():
            process.kill()
    for name, (_, status) in signals.items():
        assert processes[name].returncode == status, stderr[name][-3000:]
        assert "Traceback" not in stderr[name], stderr[name][-3000:]
        assert stderr[name].strip().splitlines()[-1] == (f"fit stopped by {name}; resume with --ckpt_path last "
                                                         f"({last[name].resolve()})")
        assert torch.load(last[name], weights_only=True)["global_step"] >= 1


# Python's own injection point for the lost Ctrl-C: CPython drops an exception raised in a function
# it calls after fork(), and a DataLoader forks its workers at every epoch.
INTERRUPT_AFTER_FORK = """
import os, runpy, signal, sys
from pathlib import Path
last = Path(sys.argv[1])
fired = []
def interrupt_in_fork_handler():
    if last.is_file() and not fired:
        fired.append(os.getpid())
        signal.raise_signal(signal.SIGINT)  # its KeyboardInterrupt is raised here, where CPython ignores it
os.register_at_fork(after_in_parent=interrupt_in_fork_handler)
sys.argv = sys.argv[2:]
runpy.run_path(sys.argv[0], run_name="__main__")
"""


@pytest.mark.slow
def test_a_ctrl_c_while_a_loader_forks_its_workers_still_stops_the_fit(fitted) -> None:
    """The SIGINT arrives inside an after-fork handler (a DataLoader worker of the second epoch
    starting): Python drops that KeyboardInterrupt, so the fit would train on; it stops at the
    next batch with one line, exit 130 and a last.ckpt."""
    folder, config, _ = fitted
    last = folder / "runs" / "forked" / "checkpoints" / "last.ckpt"
    process = subprocess.run(
        [sys.executable, "-c", INTERRUPT_AFTER_FORK, str(last), str(ROOT / "cli.py"), "fit", "--config", config,
         "--experiment", "forked", "--trainer.max_epochs", "6", "--data.init_args.loader.num_workers", "1"],
        cwd=folder, capture_output=True, text=True, timeout=600,
        preexec_fn=lambda: signal.signal(signal.SIGINT, signal.SIG_DFL))
    assert "Exception ignored" in process.stderr, "the interrupt was not raised where Python drops it"
    assert process.returncode == 130, process.stderr[-3000:]
    assert process.stderr.strip().splitlines()[-1] == (f"fit stopped by Ctrl-C (SIGINT); resume with "
                                                       f"--ckpt_path last ({last.resolve()})")
    assert torch.load(last, weights_only=True)["epoch"] < 5


@pytest.mark.slow
def test_a_checkpoint_that_cannot_be_written_leaves_the_last_complete_one(fitted) -> None:
    """A resumed fit whose files may not grow past half a checkpoint (RLIMIT_FSIZE: the write
    fails as on a full disk or a quota): one line naming the file, exit 1, and the last.ckpt
    it resumed from byte for byte as it was, with no partial file beside it."""
    folder, config, saved = fitted
    checkpoints = folder / "runs" / "full_disk" / "checkpoints"
    checkpoints.mkdir(parents=True)
    shutil.copy(saved, checkpoints / "last.ckpt")
    before = saved.read_bytes()
    limit = len(before) // 2

    def small_files() -> None:
        signal.signal(signal.SIGXFSZ, signal.SIG_IGN)  # a write past the limit then fails (EFBIG)
        resource.setrlimit(resource.RLIMIT_FSIZE, (limit, limit))

    process = subprocess.run([sys.executable, str(ROOT / "cli.py"), "fit", "--config", config, "--experiment",
                              "full_disk", "--ckpt_path", "last", "--trainer.max_epochs", "4"],
                             cwd=folder, capture_output=True, text=True, timeout=600, preexec_fn=small_files)
    assert process.returncode == 1, process.stderr[-3000:]
    last_line = process.stderr.strip().splitlines()[-1]
    assert last_line.startswith(f"error: cannot write checkpoint {checkpoints.resolve()}/"), last_line
    assert last_line.endswith("the earlier one is kept") and "Traceback" not in process.stderr
    assert (checkpoints / "last.ckpt").read_bytes() == before
    assert sorted(path.name for path in checkpoints.iterdir()) == ["last.ckpt"]
