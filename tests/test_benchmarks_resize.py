"""benchmarks/resize_speed.py: its --quick run prints one row per source, version and reader,
and writes them to --json."""

import json
import sys
from pathlib import Path

import torch

BENCHMARKS = Path(__file__).resolve().parents[1] / "benchmarks"
sys.path.insert(0, str(BENCHMARKS))  # the scripts import their sibling table.py as `table`
import resize_speed  # noqa: E402

HEADER = "| source | version | size | MiB per video | reader | ms per clip | speed-up vs original |"


def test_quick_run_times_every_version_with_every_reader(tmp_path, capsys):
    threads = torch.get_num_threads()
    try:
        assert resize_speed.main(["--quick", "--json", str(tmp_path / "resize.json")]) == 0
    finally:
        torch.set_num_threads(threads)  # the script sets one thread, as a worker
    out = capsys.readouterr().out
    assert HEADER in out and "machine:" in out and "resizing h264 mp4 with mpeg4:" in out
    (table,) = json.loads((tmp_path / "resize.json").read_text())["tables"]
    rows = {(row["source"], row["version"], row["reader"]): row for row in table["rows"]}
    for source in ("mpeg4 (xvid) avi", "h264 mp4"):
        for reader in ("decord", "torchcodec"):
            assert rows[source, "original", reader]["size"] == "96x64"
            assert rows[source, "original", reader]["speed-up vs original"] == 1.0
            resized = rows[source, "resized mpeg4", reader]
            assert resized["size"] == "60x40" and resized["ms per clip"] > 0
