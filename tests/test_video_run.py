"""The run shared by flow extraction and resizing, with toy jobs: planning, tallying, the failures list."""

from pathlib import Path

import pytest

from flow.summary import Summary
from flow.video_run import FatalError, Job, plan_jobs, run_jobs


def test_plan_skips_finished_targets_and_fails_repeated_ids_and_escapes(tmp_path):
    (tmp_path / "out" / "a").mkdir(parents=True)
    (tmp_path / "out" / "a" / "done.txt").write_text("")
    summary = Summary()
    jobs = plan_jobs(["a/done.avi", "a/new.avi", "a/new.mkv", "a/other.avi", "../outside.avi"], tmp_path / "videos",
                     tmp_path / "out", lambda vid: vid + ".txt", lambda job: job.target.is_file(), summary)
    assert [job.listed for job in jobs] == ["a/other.avi"]
    assert jobs[0].source == tmp_path / "videos" / "a" / "other.avi"
    assert jobs[0].target == tmp_path / "out" / "a" / "other.txt"
    assert summary.skipped == 1
    # Both videos of one id fail, each naming the other: which one's output the id holds is unknowable.
    assert [failure.video for failure in summary.failures] == ["a/new.avi", "a/new.mkv", "../outside.avi"]
    assert "same video id 'a/new' as a/new.mkv" in summary.failures[0].reason
    assert "same video id 'a/new' as a/new.avi" in summary.failures[1].reason


def test_a_clash_with_a_video_on_disk_fails_also_when_only_one_is_listed(tmp_path):
    (tmp_path / "videos" / "a").mkdir(parents=True)
    for name in ("test.avi", "test.MP4", "test.txt", "solo.avi"):
        (tmp_path / "videos" / "a" / name).write_bytes(b"")
    (tmp_path / "out" / "a" / "test").mkdir(parents=True)  # the first one's output, from an earlier run
    summary = Summary()
    jobs = plan_jobs(["a/test.MP4", "a/solo.avi"], tmp_path / "videos", tmp_path / "out", lambda vid: vid,
                     lambda job: job.target.is_dir(), summary)
    assert [job.listed for job in jobs] == ["a/solo.avi"] and summary.skipped == 0
    assert [(f.video, f.reason) for f in summary.failures] == [
        ("a/test.MP4", "same video id 'a/test' as a/test.avi; rename one of them")]


def test_run_tallies_results_and_writes_the_failures_sorted(tmp_path):
    class Counted(Summary):
        def add(self, result):
            self.done += 1

    summary = Counted(failures_file=tmp_path / "lists" / "failed.tsv")
    jobs = [Job(name, Path(name), Path(name)) for name in ("b.avi", "a.avi", "c.avi")]
    outcomes = [(jobs[0], "cannot decode"), (jobs[1], "broken header"), (jobs[2], object())]
    run_jobs(jobs, outcomes, summary, "toy", started=0.0, progress=False)
    assert summary.done == 1 and summary.failed == 2 and summary.wall_seconds > 0
    assert (tmp_path / "lists" / "failed.tsv").read_text() == "a.avi\tbroken header\nb.avi\tcannot decode\n"


def test_an_unwritable_failures_list_stops_the_run(tmp_path):
    blocker = tmp_path / "file"
    blocker.write_text("")
    summary = Summary(failures_file=blocker / "failed.tsv")
    job = Job("x.avi", Path("x.avi"), Path("x"))
    with pytest.raises(FatalError, match="cannot write the failures file"):
        run_jobs([job], [(job, "bad")], summary, "toy", started=0.0, progress=False)
