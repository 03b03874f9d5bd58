from datamodules.problems import (
    Problem,
    format_problems,
    layout_advice,
    report_file,
    write_problems,
)
from flow.layout import OURS


def test_the_first_problems_of_each_kind_are_printed_with_their_reason():
    problems = [Problem("missing", f"v{k}", f"no file /d/v{k}.avi") for k in range(7)]
    problems.append(Problem("unreadable", "u", "moov atom not found"))
    lines = format_problems("train", problems, shown=5)
    assert lines[0] == "train: 7 missing videos" and lines[1] == "  v0: no file /d/v0.avi"
    assert lines[6] == "  ... and 2 more" and lines[7:] == ["train: 1 unreadable videos", "  u: moov atom not found"]


def test_the_list_file_has_every_problem_on_one_line_and_goes_when_clean(tmp_path):
    path = report_file(tmp_path, "train.tsv", "ucf101", "/videos", None)
    assert path == report_file(tmp_path, "train.tsv", "ucf101", "/videos", None) != report_file(
        tmp_path, "train.tsv", "ucf101", "/other", None)
    write_problems([Problem("unreadable", "a b", "line one\nline\ttwo")], path)
    assert path.read_text() == "problem\tvideo\tdetail\nunreadable\ta b\tline one line two\n"
    write_problems([], path)
    assert not path.exists()


def test_layout_advice_names_the_layout_most_folders_follow():
    problems = [Problem("other_layout", "a", "...", "denseflow"), Problem("incomplete_flow", "b", "...", "denseflow"),
                Problem("incomplete_flow", "c", "...", "mmaction2"), Problem("missing", "d", "...")]
    assert layout_advice(problems, OURS) == ("flow layout: 2 folders follow --flow-layout denseflow, not the "
                                             "reader's (ours); give --flow-layout denseflow (a config: flow_layout)")
    assert layout_advice(problems[3:], OURS) is None
