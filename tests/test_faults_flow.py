"""Faults of flow extraction, for real: ``python -m flow extract`` subprocesses killed with
SIGKILL and SIGTERM, two extraction processes on one output root, leftovers of killed runs,
duplicate video ids. Each fault and what a rerun does: docs/faults.md."""

import os
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

import pytest

from flow.__main__ import main as flow_main
from flow.extract import ExtractionConfig, extract_many
from flow.meta import META_FILE, read_meta
from flow.ownership import TMP_MARK, Writer, lock_path, temporary
from flow.store import FolderFlowStore

VIDEOS = 4
FAST = ExtractionConfig(algorithm="dis", short_side=0)


def write_videos(root: Path, count: int = VIDEOS, frames: int = 20, names: list[str] | None = None,
                 size: str = "64x48") -> list[str]:
    root.mkdir(parents=True, exist_ok=True)
    names = names or [f"v{n}.avi" for n in range(count)]
    for n, name in enumerate(names):
        subprocess.run(["ffmpeg", "-loglevel", "error", "-y", "-f", "lavfi", "-i",
                        f"testsrc=size={size}:rate=25:duration=20,hue=h={40 * n}", "-frames:v", str(frames),
                        "-pix_fmt", "yuv420p", "-c:v", "mpeg4", str(root / name)], check=True)
    return names


def extract_command(video_root: Path, out: Path, *extra: str) -> list[str]:
    return [sys.executable, "-m", "flow", "extract", str(video_root), str(out), "--short-side", "0", "--no-progress",
            *extra]


def start(video_root: Path, out: Path, *extra: str) -> subprocess.Popen:
    # tvl1: slow enough on 64x48 that the run is still going when it is killed.
    # SIGINT restored: a shell's background job ignores it and the child would inherit that.
    return subprocess.Popen(extract_command(video_root, out, "--algorithm", "tvl1", *extra), stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE, text=True, start_new_session=True,
                            preexec_fn=lambda: signal.signal(signal.SIGINT, signal.SIG_DFL))


def wait_for(condition, timeout: float, what: str) -> None:
    deadline = time.monotonic() + timeout
    while not condition():
        if time.monotonic() > deadline:
            pytest.fail(f"no {what} within {timeout} s")
        time.sleep(0.05)


def writing(out: Path) -> bool:
    """A video is being written: its writer's temporary folder exists."""
    return out.is_dir() and any(TMP_MARK in path.name for path in out.iterdir())


def descendants(pid: int) -> list[int]:
    children: dict[int, list[int]] = {}
    for entry in os.listdir("/proc"):
        if entry.isdigit():
            try:
                ppid = int(Path(f"/proc/{entry}/stat").read_text().rsplit(")", 1)[1].split()[1])
            except (OSError, IndexError, ValueError):
                continue
            children.setdefault(ppid, []).append(int(entry))
    found, todo = [], [pid]
    while todo:
        for child in children.get(todo.pop(), []):
            found.append(child)
            todo.append(child)
    return found


def running(pid: int) -> bool:
    try:
        state = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0]
    except (OSError, IndexError):
        return False
    return state not in ("Z", "X")  # a zombie is dead, only not yet reaped by whoever adopted it


def assert_complete(out: Path, ids: list[str]) -> None:
    """What ``check --verify`` asks of each video: meta.json, every field it lists readable;
    and nothing of a writer left behind."""
    store = FolderFlowStore(out)
    for video_id in ids:
        meta = read_meta(out / video_id)
        assert meta is not None, f"{video_id}: no meta.json"
        names = sorted(path.name for path in (out / video_id).iterdir())
        assert len(names) == 2 * meta.num_flows + 1, f"{video_id}: {len(names)} files for {meta.num_flows} fields"
        assert store.read_fields(video_id, range(meta.num_flows)).planes.shape[0] == meta.num_flows
    assert not [path.name for path in out.iterdir() if TMP_MARK in path.name or path.suffix == ".lock"]


@pytest.fixture
def videos(tmp_path) -> Path:
    write_videos(tmp_path / "videos")
    return tmp_path / "videos"


IDS = [f"v{n}" for n in range(VIDEOS)]


def rerun(videos: Path, out: Path) -> int:
    """The same command again, in this process (fast: DIS, no workers to start)."""
    return flow_main(["extract", str(videos), str(out), "--algorithm", "dis", "--short-side", "0", "--no-progress"])


@pytest.mark.slow
def test_sigkill_of_the_parent_ends_its_workers_and_a_rerun_completes_the_rest(videos, tmp_path):
    out = tmp_path / "out"
    run = start(videos, out, "--workers", "2")
    family: list[int] = []
    try:
        wait_for(lambda: writing(out), 60, "video being written")
        family = descendants(run.pid)
        assert len(family) >= 3  # the fork server and two workers (and the resource tracker)
        run.kill()
        run.wait()
        wait_for(lambda: not any(map(running, family)), 10, "end of the workers after their parent's SIGKILL")
    finally:
        for pid in [run.pid, *family]:  # on failure, nothing of this test outlives it
            if running(pid):
                os.kill(pid, signal.SIGKILL)
    assert rerun(videos, out) == 0
    assert_complete(out, IDS)


@pytest.mark.parametrize("stop", [pytest.param("SIGTERM"), pytest.param("Ctrl-C", marks=pytest.mark.slow)])
def test_sigterm_and_ctrl_c_stop_the_run_with_one_line_and_143_or_130_and_a_rerun_completes_it(videos, tmp_path,
                                                                                                stop):
    out = tmp_path / "out"
    run = start(videos, out, "--workers", "2")
    wait_for(lambda: writing(out), 60, "video being written")
    family = descendants(run.pid)
    started = time.monotonic()
    if stop == "SIGTERM":
        run.terminate()
    else:  # a terminal's Ctrl-C: SIGINT to the whole foreground process group
        os.killpg(run.pid, signal.SIGINT)
    _, stderr = run.communicate(timeout=30)
    assert run.returncode == (143 if stop == "SIGTERM" else 130) and time.monotonic() - started < 15
    lines = [line for line in stderr.splitlines() if not line.startswith("shard ")]
    assert lines == [f"stopped by {stop}; rerun the same command to resume (unfinished videos are redone)"], stderr
    wait_for(lambda: not any(map(running, family)), 10, "end of the workers")
    # Nothing that looks complete is half-written: every final name has its meta.json.
    assert all((path / META_FILE).is_file() for path in out.iterdir() if path.is_dir() and TMP_MARK not in path.name)
    assert rerun(videos, out) == 0
    assert_complete(out, IDS)


@pytest.mark.slow
def test_resize_stops_on_sigterm_as_extraction_does(tmp_path):
    videos, out = tmp_path / "videos", tmp_path / "small"
    write_videos(videos, count=3, frames=150, size="320x240")
    command = [sys.executable, "-m", "datamodules", "resize", str(videos), str(out), "--short-side", "128",
               "--workers", "2", "--no-progress"]
    run = subprocess.Popen(command, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, start_new_session=True)
    wait_for(lambda: writing(out), 120, "video being re-encoded")
    family = descendants(run.pid)
    run.terminate()
    _, stderr = run.communicate(timeout=30)
    assert run.returncode == 143
    assert [line for line in stderr.splitlines() if not line.startswith("shard ")] == [
        "stopped by SIGTERM; rerun the same command to resume (unfinished videos are redone)"], stderr
    wait_for(lambda: not any(map(running, family)), 10, "end of the workers")
    assert all(path.suffix == ".mp4" or TMP_MARK in path.name or path.suffix == ".lock" for path in out.iterdir())


@pytest.mark.slow
def test_two_writers_on_one_root_share_the_videos_and_leave_each_complete(videos, tmp_path):
    out = tmp_path / "out"
    first = start(videos, out)
    wait_for(lambda: writing(out), 60, "video being written")
    second = start(videos, out)
    results = [run.communicate(timeout=240) for run in (first, second)]
    assert [first.returncode, second.returncode] == [0, 0], results
    done = [int(stdout.split("videos: ")[1].split(" done")[0]) for stdout, _ in results]
    assert sum(done) == VIDEOS, results  # each video written once: the other writer skipped it
    assert_complete(out, IDS)


def dead_writer() -> Writer:
    finished = subprocess.run([sys.executable, "-c", "import os; print(os.getpid())"], capture_output=True, text=True)
    return Writer(socket.gethostname(), int(finished.stdout), 0)


def test_a_rerun_redoes_exactly_the_videos_a_killed_run_left_unfinished(videos, tmp_path):
    out = tmp_path / "out"
    assert extract_many(videos, [f"{i}.avi" for i in IDS], out, FAST, progress=False).done == VIDEOS
    complete = (out / "v0" / META_FILE).stat().st_mtime_ns
    killed = dead_writer()  # v1: a killed writer's lock and temporary folder
    (out / "v1").rename(temporary(out / "v1", killed.tag()))
    (temporary(out / "v1", killed.tag()) / META_FILE).unlink()
    lock_path(out / "v1").write_text(killed.text())
    (out / "v2" / META_FILE).unlink()  # v2: an older version's killed run, in place (no meta.json)
    (out / "v2" / "flow_x_00003.jpg").write_bytes(b"half")
    summary = extract_many(videos, [f"{i}.avi" for i in IDS], out, FAST, progress=False)
    assert (summary.done, summary.skipped, summary.failed) == (2, 2, 0)
    assert (out / "v0" / META_FILE).stat().st_mtime_ns == complete
    assert_complete(out, IDS)


def test_a_video_a_live_writer_holds_is_skipped_and_named_not_touched(videos, tmp_path):
    out = tmp_path / "out"
    holder = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(60)"])
    try:
        (out / "v1.tmp-other").mkdir(parents=True)
        (out / "v1.tmp-other" / "flow_x_00001.jpg").write_bytes(b"in use")
        lock_path(out / "v1").write_text(Writer(socket.gethostname(), holder.pid, 0).text())
        summary = extract_many(videos, [f"{i}.avi" for i in IDS], out, FAST, progress=False)
    finally:
        holder.kill()
        holder.wait()
    assert (summary.done, summary.failed) == (3, 0)
    assert [skip.video for skip in summary.in_use] == ["v1.avi"] and str(holder.pid) in summary.in_use[0].reason
    assert "1 videos skipped as another writer's; first: v1.avi" in summary.format()
    assert (out / "v1.tmp-other" / "flow_x_00001.jpg").read_bytes() == b"in use" and not (out / "v1").exists()
    # Its writer died: the next run takes the stale lock over and extracts the video.
    assert extract_many(videos, ["v1.avi"], out, FAST, progress=False).done == 1
    assert read_meta(out / "v1") is not None and not lock_path(out / "v1").exists()


def test_a_duplicate_id_is_refused_on_every_run_also_from_the_failures_list(tmp_path, capsys):
    videos = tmp_path / "videos"
    write_videos(videos, names=["test.avi", "test.mp4", "other.avi"])
    out, failures = tmp_path / "out", tmp_path / "failures.txt"
    args = ["extract", str(videos), str(out), "--algorithm", "dis", "--short-side", "0", "--no-progress",
            "--failures", str(failures)]
    assert flow_main(args) == 1
    assert [line.split("\t")[0] for line in failures.read_text().splitlines()] == ["test.avi", "test.mp4"]
    assert "same video id 'test' as test.mp4" in failures.read_text()
    assert not (out / "test").exists()
    # A rerun from the failures list, and from a list naming only one of the two.
    only_one = tmp_path / "only_one.txt"
    only_one.write_text("test.mp4\n")
    for listed in (failures, only_one):
        assert flow_main([*args, "--list", str(listed)]) == 1
        assert "same video id 'test' as test.avi" in failures.read_text()
    assert not (out / "test").exists()
    assert "0 done" in capsys.readouterr().out


def test_pack_refuses_a_folder_of_ours_without_meta_json(videos, tmp_path, capsys):
    out = tmp_path / "out"
    extract_many(videos, ["v0.avi", "v1.avi"], out, FAST, progress=False)
    (out / "v1" / META_FILE).unlink()  # an older version's killed run
    assert flow_main(["pack", str(out), str(tmp_path / "packed")]) == 1
    assert f"{out / 'v1'}: flow files but no meta.json" in capsys.readouterr().err
    assert (tmp_path / "packed" / "v0.zip").is_file() and not (tmp_path / "packed" / "v1.zip").exists()


def test_training_warns_once_per_folder_whose_field_count_disagrees_with_its_frames(tmp_path, caplog):
    from types import SimpleNamespace

    from datamodules.datasets import VideoDataset

    # Folders without meta.json (another tool's, or an older version's leftover): v0 whole, v1 cut short.
    index = SimpleNamespace(video_ids=["v0", "v1"], num_flows=[11, 4], flow_frames=[None, None], num_frames=[12, 12])
    dataset = SimpleNamespace(index=index, keys=("flow",), store=FolderFlowStore(tmp_path))
    with caplog.at_level("WARNING", logger="datamodules.datasets"):
        for _ in range(3):
            assert [VideoDataset._counts(dataset, j) for j in (0, 1)] == [(12, 11), (12, 4)]
    assert [record.getMessage() for record in caplog.records] == [
        f"{tmp_path / 'v1'} holds 4 flow fields but its video is listed with 12 frames: an unfinished extraction? "
        "(re-extract it with python -m flow extract)"]
