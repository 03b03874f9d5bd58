"""benchmarks/report.py: a --json file becomes its markdown section between the file's markers, the prose
and other sections untouched; plots where matplotlib is installed, a line saying why not elsewhere."""

import importlib.util
import io
import json
import sys
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "benchmarks"))  # the scripts import it as `table`
import report  # noqa: E402
import table  # noqa: E402

DOC = """# Benchmarks

Prose a person wrote.

<!-- report: test_memory -->
an old table
<!-- /report: test_memory -->

More prose.

<!-- report: flow_speed -->
kept: no fresh file
<!-- /report: flow_speed -->
"""


def _memory_json(path: Path) -> Path:
    run = table.Report("test_memory", table.describe_machine("a test CPU"), path, out=io.StringIO())
    run.note("bare: every view as float32")
    rows = run.table("Host memory and time of testing one video", ["stream", "path", "chunk",
                                                                   "building MiB over baseline", "vs bare"])
    rows.add("ResNet-18 flow", "bare", 250, 2245.0, table.ratio(1.0))
    rows.add("ResNet-18 flow", "ours", 10, 44.123, table.ratio(51.0))
    run.finish()
    return path


def test_update_replaces_only_the_given_benchmarks_section(tmp_path, monkeypatch):
    monkeypatch.setattr(importlib.util, "find_spec", lambda name, *a: None)  # as where matplotlib is absent
    markdown = tmp_path / "benchmarks.md"
    markdown.write_text(DOC)
    assert report.main([str(_memory_json(tmp_path / "memory.json")), "--update", str(markdown)]) == 0
    text = markdown.read_text()
    assert "an old table" not in text and "kept: no fresh file" in text
    assert text.startswith("# Benchmarks\n\nProse a person wrote.\n") and "\nMore prose.\n" in text
    section = text.split("<!-- report: test_memory -->\n")[1].split("<!-- /report: test_memory -->")[0]
    assert section.startswith("Measured by `python benchmarks/") and " at commit " in section
    assert "machine: a test CPU, " in section and "- bare: every view as float32" in section
    assert "| stream | path | chunk | building MiB over baseline | vs bare |" in section
    assert "| ResNet-18 flow | ours | 10 | 44.1 | 51.0x |" in section  # as the run printed it
    assert "(Plots skipped: matplotlib is not installed" in section
    assert not list(tmp_path.glob("*.partial"))


def test_files_without_printed_text_are_formatted_from_their_values(tmp_path, capsys):
    path = _memory_json(tmp_path / "memory.json")
    document = json.loads(path.read_text())
    del document["tables"][0]["text"], document["commit"]
    path.write_text(json.dumps(document))
    assert report.main([str(path)]) == 0
    out = capsys.readouterr().out
    assert "| ResNet-18 flow | ours | 10 | 44.1 | 51.0 |" in out and "at commit unknown" in out


def test_plots_are_drawn_where_matplotlib_is_installed(tmp_path):
    pytest.importorskip("matplotlib")
    markdown = tmp_path / "benchmarks.md"
    markdown.write_text(DOC)
    report.main([str(_memory_json(tmp_path / "memory.json")), "--update", str(markdown)])
    assert (tmp_path / "benchmark_test_memory_0.png").stat().st_size > 0
    assert "](benchmark_test_memory_0.png)" in markdown.read_text()
    assert not list(tmp_path.glob("*.partial"))


@pytest.mark.parametrize("content, message", [
    ("not json", "cannot read it"),
    ('{"benchmark": "x"}', "not the --json of a benchmark"),
])
def test_a_file_that_is_not_a_benchmarks_json_is_refused_naming_it(tmp_path, content, message):
    path = tmp_path / "odd.json"
    path.write_text(content)
    with pytest.raises(SystemExit, match=f"odd.json: {message}"):
        report.main([str(path)])


def test_a_markdown_file_without_the_markers_is_refused(tmp_path):
    markdown = tmp_path / "README.md"
    markdown.write_text("# no markers here\n")
    with pytest.raises(SystemExit, match="no '<!-- report: test_memory -->'"):
        report.main([str(_memory_json(tmp_path / "memory.json")), "--update", str(markdown)])
    assert markdown.read_text() == "# no markers here\n"
