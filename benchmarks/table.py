"""The benchmarks' one output mechanism: markdown tables printed row by row as rows are
measured, numbers at 3 significant digits, and the same tables with the machine they ran
on written to ``--json FILE``.

Numbers: a float prints with 3 significant digits, positionally, trailing zeros kept and
thousands separated: 0.012345 -> ``0.0123``, 1.5 -> ``1.50``, 1234.5 -> ``1,230``,
0 -> ``0``. An int prints whole. The JSON file holds the unrounded values (NaN and
infinity as null) and the printed text of each row, with the machine and the git commit
measured, rewritten after every row, so an interrupted run keeps what it measured;
``benchmarks/report.py`` turns such files into docs/benchmarks.md's tables.

Standard library only: ``benchmarks/test_memory.py`` must not import torch in its parent
process (a child's peak memory includes its parent's), so torch's version is read from
the installed package's metadata.
"""

from __future__ import annotations

import argparse
import datetime
import json
import math
import os
import platform
import subprocess
import sys
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from importlib import metadata
from pathlib import Path
from typing import IO, Any

SIGNIFICANT_DIGITS = 3


def significant(value: float, digits: int = SIGNIFICANT_DIGITS) -> str:
    """``value`` rounded to ``digits`` significant digits (see the module's docstring)."""
    if not math.isfinite(value):
        return str(value)
    if value == 0:
        return "0"
    rounded = float(f"{value:.{digits - 1}e}")  # rounding first makes 999.7 -> 1,000, not 1,000.0
    exponent = math.floor(math.log10(abs(rounded)))
    return f"{rounded:,.{max(0, digits - 1 - exponent)}f}"


@dataclass(frozen=True)
class Cell:
    """A cell whose markdown text is not its value's default: ``value`` goes to the JSON file."""

    value: Any
    text: str


def ratio(value: float) -> Cell:
    """``1.63x``."""
    return Cell(value, f"{significant(value)}x")


def percent(fraction: float) -> Cell:
    """A signed change, 0.052 -> ``+5.2%``; the JSON file keeps the fraction."""
    return Cell(fraction, f"{100 * fraction:+.1f}%")


def fixed(value: float, decimals: int) -> Cell:
    """A number at fixed decimals, for exact quantities (MiB from the kernel's counters)."""
    return Cell(value, f"{value:.{decimals}f}")


def joined(values: Sequence[float], separator: str) -> Cell:
    """Several numbers in one cell, ``12.3 / 45.6``; a list in the JSON file."""
    return Cell(list(values), separator.join(significant(value) for value in values))


def shape(dims: Iterable[int]) -> Cell:
    """``3x224x224``."""
    dims = list(dims)
    return Cell(dims, "x".join(map(str, dims)))


def cell_text(value: object) -> str:
    if isinstance(value, Cell):
        return value.text
    if value is None:
        return "-"
    if isinstance(value, float):
        return significant(value)
    return str(value)


def json_value(value: object) -> object:
    if isinstance(value, Cell):
        return json_value(value.value)
    if isinstance(value, float) and not math.isfinite(value):
        return None
    if isinstance(value, (list, tuple)):
        return [json_value(item) for item in value]
    return value


def cpu_model() -> str:
    try:
        with open("/proc/cpuinfo") as cpuinfo:
            for line in cpuinfo:
                if line.startswith("model name"):
                    return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or platform.machine()


def package_version(name: str) -> str | None:
    """The version of an installed package: the imported module's when loaded (torch's carries
    its build, ``+cu132``), else its metadata's (no import)."""
    module = sys.modules.get(name)
    if getattr(module, "__version__", None):
        return str(module.__version__)
    try:
        return metadata.version(name)
    except metadata.PackageNotFoundError:
        return None


def describe_machine(device: str | None = None, **extra: object) -> dict[str, object]:
    """CPU count, torch version and device name (the CPU's model unless ``device`` names another),
    and ``extra`` facts a benchmark depends on (library versions, threads)."""
    usable = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count()
    return {
        "cpu_count": os.cpu_count(),
        "usable_cpus": usable,
        "load_average": round(os.getloadavg()[0], 1) if hasattr(os, "getloadavg") else None,
        "platform": f"{platform.machine()} {platform.system()}",
        "python": platform.python_version(),
        "torch": package_version("torch"),
        "device": device or cpu_model(),
        **extra,
    }


def machine_line(machine: dict[str, object]) -> str:
    """The machine description as one line of the report."""
    known = ("cpu_count", "usable_cpus", "load_average", "platform", "python", "torch", "device")
    extra = "".join(f", {key.replace('_', ' ')} {value}" for key, value in machine.items() if key not in known)
    return (f"machine: {machine['device']}, {machine['platform']}, {machine['usable_cpus']} of "
            f"{machine['cpu_count']} CPU cores usable, load average {machine['load_average']}; "
            f"python {machine['python']}, torch {machine['torch']}{extra}")


def git_commit() -> str | None:
    """The commit of the checkout the benchmarks run from (``+`` when it has uncommitted changes), or None."""
    repo = Path(__file__).resolve().parents[1]
    try:
        commit = subprocess.run(["git", "rev-parse", "--short=10", "HEAD"], cwd=repo, capture_output=True, text=True,
                                timeout=10, check=True).stdout.strip()
        dirty = subprocess.run(["git", "status", "--porcelain", "--untracked-files=no"], cwd=repo,
                               capture_output=True, text=True, timeout=10, check=True).stdout.strip()
    except (OSError, subprocess.SubprocessError):
        return None
    return commit + ("+" if dirty else "")


def add_json_option(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--json", type=Path, metavar="FILE",
                        help="also write the tables (unrounded) and the machine description to FILE")


def progress(text: str) -> None:
    """What the run is doing now: on stderr, so stdout is the report alone."""
    print(text, file=sys.stderr, flush=True)


class Table:
    """A markdown table being printed: its header is out, each ``add`` prints one row at once."""

    def __init__(self, report: Report, record: dict[str, Any]):
        self._report, self._record = report, record

    @property
    def columns(self) -> list[str]:
        return self._record["columns"]

    def add(self, *cells: object) -> None:
        if len(cells) != len(self.columns):
            raise ValueError(f"{len(cells)} cells for the {len(self.columns)} columns {self.columns}")
        texts = [cell_text(cell) for cell in cells]
        self._report._print("| " + " | ".join(texts) + " |")
        self._record["rows"].append({column: json_value(cell) for column, cell in zip(self.columns, cells)})
        self._record["text"].append(texts)
        self._report._save()


class Report:
    """What a benchmark prints, flushed line by line, and its ``--json`` file.

    Args:
        benchmark: the script's name, recorded in the file.
        machine: ``describe_machine(...)``; printed first.
        json_path: the ``--json FILE``, or None. It is written at once, so a path that
            cannot be written fails before anything is measured.
        out: where the report is printed (stdout).
    """

    def __init__(self, benchmark: str, machine: dict[str, object], json_path: Path | None = None,
                 out: IO[str] | None = None):
        self._out = out or sys.stdout
        self._json_path = json_path
        self._document: dict[str, Any] = {
            "benchmark": benchmark,
            "command": [Path(sys.argv[0]).name, *sys.argv[1:]],
            "commit": git_commit(),
            "started": datetime.datetime.now().astimezone().isoformat(timespec="seconds"),
            "finished": None,
            "machine": machine,
            "notes": [],
            "tables": [],
        }
        self._printed = False
        self._in_table = False
        self._save()
        self.note(machine_line(machine))

    def note(self, text: str = "") -> None:
        """A line of the report (a blank one without ``text``); non-blank lines go to the file's notes."""
        if self._in_table:
            self._in_table = False
            if text:
                self._print("")
        self._print(text)
        if text:
            self._document["notes"].append(text)
            self._save()

    def table(self, title: str, columns: Sequence[str]) -> Table:
        """Print ``### title`` and the table's header; rows follow with ``Table.add``."""
        if len(set(columns)) != len(columns):
            raise ValueError(f"repeated column names in {list(columns)}")
        if self._printed:
            self._print("")
        self._print(f"### {title}")
        self._print("")
        self._print("| " + " | ".join(columns) + " |")
        self._print("|" + "|".join("---" for _ in columns) + "|")
        self._in_table = True
        record: dict[str, Any] = {"title": title, "columns": list(columns), "rows": [], "text": []}
        self._document["tables"].append(record)
        self._save()
        return Table(self, record)

    def finish(self) -> None:
        """Mark the file complete."""
        self._document["finished"] = datetime.datetime.now().astimezone().isoformat(timespec="seconds")
        self._save()

    def _print(self, line: str) -> None:
        print(line, file=self._out, flush=True)
        self._printed = True

    def _save(self) -> None:
        if self._json_path is None:
            return
        partial = self._json_path.with_name(self._json_path.name + ".partial")
        try:
            partial.write_text(json.dumps(self._document, indent=1, allow_nan=False) + "\n")
            os.replace(partial, self._json_path)
        except OSError as error:
            raise SystemExit(f"--json: cannot write {self._json_path}: {error.strerror or error}") from error
