"""docs/benchmarks.md's tables from the benchmarks' ``--json`` files.

Each benchmark's section in the markdown file is delimited by two marker lines,
``<!-- report: NAME -->`` and ``<!-- /report: NAME -->``, where NAME is the file's
``benchmark`` (the script's name, e.g. ``flow_speed``). ``--update`` replaces what is between the markers of each
benchmark given a file with the run's command, machine, commit and dates, its notes and its
tables (the text the run printed) and plots; sections without a file keep what they hold,
and the prose around the markers is never touched. Without ``--update`` the generated
markdown goes to stdout, without plots.

Plots: where a reader would rather look than read (``PLOTS`` below: pairs/s by algorithm
and device, host memory per test video, samples/s per sample kind), a PNG beside the
markdown file (``benchmark_NAME_N.png``), linked from its section, drawn with matplotlib
(the ``bench`` extra); without it the plots are skipped and the section says so.

Run:  python benchmarks/flow_speed.py --json benchmarks/results/flow_speed.json   (and the others)
      python benchmarks/report.py --update docs/benchmarks.md benchmarks/results/*.json
"""

from __future__ import annotations

import argparse
import importlib.util
import json
import re
import sys
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from table import cell_text, machine_line


@dataclass(frozen=True)
class Plot:
    """A bar chart of one table: ``value`` per row, the row labelled by ``labels`` joined."""

    benchmark: str
    title_start: str  # the table whose title starts so
    labels: tuple[str, ...]
    value: str
    axis: str


PLOTS = (
    Plot("flow_speed", "GPU flow engine", ("algorithm", "device", "batch"), "tool pairs/s", "pairs/s (tool)"),
    Plot("flow_speed", "Tool throughput", ("algorithm",), "1 worker pairs/s", "pairs/s, 1 worker"),
    Plot("test_memory", "Host memory and time", ("stream", "path"), "building MiB over baseline",
         "host MiB per test video"),
    Plot("loader_speed", "Our dataset", ("sample", "source"), "samples/s per worker", "samples/s per worker"),
)


def load(path: Path) -> dict[str, Any]:
    """A ``--json`` file of one of the benchmarks; one clear line when it is not one."""
    try:
        document = json.loads(path.read_text())
    except (OSError, ValueError) as error:
        raise SystemExit(f"{path}: cannot read it: {error}") from error
    if not isinstance(document, dict) or not {"benchmark", "machine", "tables"} <= set(document):
        raise SystemExit(f"{path}: not the --json of a benchmark (no benchmark, machine and tables)")
    return document


def row_texts(table: dict[str, Any]) -> list[list[str]]:
    """The row cells as the run printed them (older files kept only the values: formatted here)."""
    if "text" in table:
        return table["text"]
    return [[cell_text(row.get(column)) for column in table["columns"]] for row in table["rows"]]


def markdown_table(table: dict[str, Any]) -> list[str]:
    lines = [f"#### {table['title']}", "", "| " + " | ".join(table["columns"]) + " |",
             "|" + "|".join("---" for _ in table["columns"]) + "|"]
    return lines + ["| " + " | ".join(cells) + " |" for cells in row_texts(table)]


def header(document: dict[str, Any]) -> list[str]:
    command = " ".join(document.get("command") or [f"{document['benchmark']}.py"])
    status = f"finished {document['finished']}" if document.get("finished") else "interrupted: a partial run"
    commit = document.get("commit") or "unknown"
    return [f"Measured by `python benchmarks/{command}` at commit {commit}, started {document.get('started')}, "
            f"{status}.", "", machine_line(document["machine"]) + "."]


def section(document: dict[str, Any], plots: list[str]) -> str:
    """A benchmark's generated markdown: header, notes (the machine line is in the header), tables, plots."""
    lines = header(document)
    notes = [note for note in document.get("notes", []) if not note.startswith("machine: ")]
    if notes:
        lines += [""] + [f"- {note}" for note in notes]
    for table in document["tables"]:
        lines += [""] + markdown_table(table)
    for plot in plots:
        lines += ["", plot]
    return "\n".join(lines)


def draw_plots(document: dict[str, Any], folder: Path) -> list[str]:
    """The PNGs of ``document``'s tables listed in PLOTS, written to ``folder``; markdown lines linking them,
    or saying why there are none."""
    wanted = [(plot, table) for plot in PLOTS if plot.benchmark == document["benchmark"]
              for table in document["tables"] if table["title"].startswith(plot.title_start)
              and {plot.value, *plot.labels} <= set(table["columns"])]
    if not wanted:
        return []
    if importlib.util.find_spec("matplotlib") is None:
        return ["(Plots skipped: matplotlib is not installed where this report was made: "
                "`pip install -e \".[bench]\"`.)"]
    import matplotlib

    matplotlib.use("Agg")
    from matplotlib import pyplot

    lines = []
    for number, (plot, table) in enumerate(wanted):
        rows = [row for row in table["rows"] if isinstance(row.get(plot.value), (int, float))]
        if not rows:
            continue
        labels = [", ".join(str(row[label]) for label in plot.labels if row[label] is not None) for row in rows]
        figure, axes = pyplot.subplots(figsize=(7, 0.35 * len(rows) + 1.2))
        axes.barh(labels[::-1], [row[plot.value] for row in rows][::-1])
        axes.set_xlabel(plot.axis)
        axes.set_title(table["title"], fontsize=9)
        figure.tight_layout()
        name = f"benchmark_{document['benchmark']}_{number}.png"
        partial = folder / (name + ".partial")
        figure.savefig(partial, dpi=100, format="png", metadata={"Software": None})  # no version: same bytes
        pyplot.close(figure)
        partial.replace(folder / name)
        lines.append(f"![{table['title']}]({name})")
    return lines


def markers(name: str) -> tuple[str, str]:
    return f"<!-- report: {name} -->", f"<!-- /report: {name} -->"


def update(markdown: str, sections: dict[str, str], path: Path) -> str:
    """``markdown`` with the text between each benchmark's markers replaced by its section."""
    for name, text in sections.items():
        start, end = markers(name)
        pattern = re.compile(re.escape(start) + r"\n.*?" + re.escape(end), re.DOTALL)
        if not pattern.search(markdown):
            raise SystemExit(f"{path}: no '{start}' ... '{end}' lines to put the {name} tables between")
        markdown = pattern.sub(lambda _: f"{start}\n{text}\n{end}", markdown, count=1)
    return markdown


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0],
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("results", nargs="+", type=Path, help="--json files of the benchmarks")
    parser.add_argument("--update", type=Path, metavar="MARKDOWN",
                        help="replace the sections of these benchmarks in this file (e.g. docs/benchmarks.md)")
    args = parser.parse_args(argv)
    documents = [load(path) for path in args.results]
    names = [document["benchmark"] for document in documents]
    if len(set(names)) != len(names):
        raise SystemExit(f"one file per benchmark, please: {', '.join(sorted(names))}")
    sections = {document["benchmark"]: section(document, [] if args.update is None
                                               else draw_plots(document, args.update.parent))
                for document in documents}
    if args.update is None:
        print("\n\n".join(f"### {name}\n\n{text}" for name, text in sections.items()))
        return 0
    try:
        markdown = args.update.read_text()
    except OSError as error:
        raise SystemExit(f"--update: cannot read {args.update}: {error.strerror or error}") from error
    partial = args.update.with_name(args.update.name + ".partial")
    partial.write_text(update(markdown, sections, args.update))
    partial.replace(args.update)
    print(f"updated {', '.join(sections)} in {args.update}", file=sys.stderr)
    return 0


if __name__ == "__main__":
    sys.exit(main())
