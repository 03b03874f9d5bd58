"""The run shared by flow extraction and resizing, with toy jobs: planning, tallying, the failures list."""

from pathlib import Path

import pytest

from flow.summary import Summary
from flow.video_run import FatalError, Job, plan_jobs, run_jobs


def test_plan_skips_finished_targets_and_fails_repeated_ids_and_escapes(tmp_path):
    (tmp_path / "out" / "a").mkdir(parents=True)
    (tmp_path / "out" / "a" / "done.txt").write_text("")
    summary = Summary()
    jobs = plan_jobs(["a/done.avi", "a/new.avi", "a/new.mkv", "../outside.avi"], tmp_path / "videos", tmp_path / "out",
                     lambda vid: vid + ".txt", lambda job: job.target.is_file(), summary)
    assert [job.listed for job in jobs] == ["a/new.avi"]
    assert jobs[0].source == tmp_path / "videos" / "a" / "new.avi" and jobs[0].target == tmp_path / "out" / "a" / "new.txt"
    assert summary.skipped == 1
    assert [failure.video for failure in summary.failures] == ["a/new.mkv", "../outside.avi"]
    assert "same video id 'a/new' as a/new.avi" in summary.failures[0].reason


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
