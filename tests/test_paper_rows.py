"""Every command of docs/paper_rows.md runs, so the table of the papers' rows cannot rot.

The commands are read from the page itself (each ```python cli.py ...``` span of its tables)
and, in-process through ``cli.cli_main``:

1. parsed as written, against the real configs (``--print_config``): every key exists and
   every value type-checks;
2. the configuration each ``fit`` prints is shrunk onto generated data the way
   tests/test_configs.py shrinks every config (``tiny_config``: the tiny dataset of the
   annotation source the final config names, no weight downloads, 8-frame clips, 32 px crops
   but CNN-M's 224, no logger), then either
   - run as ``fit --trainer.fast_dev_run`` (one training and one validation step), for the
     first command that sets each override changing what a training step computes
     (``sampling``, ``augment``, ``in_channels``, ``freeze_backbone``, a network's class), or
   - instantiated (``run=False``) with its data set up for fit, for the first command of a
     config to set each other override (or a later config file, another dataset): the
     networks are built and the data checked against them (a bi-directional stack without
     backward flow, trajectory stacking for a 3D network), which catches what a wrong
     override breaks at a fraction of a step's cost;
   - parsed only, for the rest: commands that differ from a built one in values only
     (dropout 0.5 or 0.9, a checkpoint path), a config file as it is (test_configs runs each
     with fast_dev_run), and ``test`` commands, which load checkpoints other rows train.

UCF-101 rows read a tiny UCF-101 extracted with backward flow too (the bi-directional rows
need it); the other datasets are conftest's shared ones. The commands together take about a
minute and a half of two CPU cores (65 parses, ~19 instantiations, 6 steps), so they are
``slow``; the page's shape (every row a command or the reason it has none) is checked fast.
"""

import contextlib
import io
import re
import shlex
from pathlib import Path

import pytest
import yaml

import tests.test_configs as configs_test
from cli import cli_main
from datamodules.annotations import UCF101
from tests.conftest import TINY, generate_with_flow
from tests.test_configs import config_sources, generated, shared_dataset, tiny_config  # noqa: F401 (fixture)

ROOT = Path(__file__).resolve().parents[1]
PAGE = ROOT / "docs" / "paper_rows.md"
NOT_REPRODUCIBLE = "Not reproducible here"
# Overrides that change what a training step computes: the first command setting each runs a step.
STEP_CHANGING = re.compile(r"\.sampling\.|\.augment\.|in_channels|freeze_backbone"
                           r"|^--model\.init_args\.(spatial|temporal|network)$")  # the last: a network's class


def table_rows(page: str) -> dict[str, list[list[str]]]:
    """The rows of each "### Table" section, as lists of cells (header and rule dropped)."""
    tables = {}
    for section in page.split("\n### ")[1:]:
        title = section.splitlines()[0]
        lines = [line for line in section.splitlines() if line.startswith("|")]
        tables[title] = [[cell.strip() for cell in line.strip("|").split("|")] for line in lines[2:]]
    return tables


def row_commands(cells: list[str]) -> list[str]:
    return [command for cell in cells for command in re.findall(r"`(python cli\.py [^`]*)`", cell)]


def page_commands() -> list[str]:
    """Every distinct command of the page's tables, in the page's order."""
    commands = [command for rows in table_rows(PAGE.read_text()).values() for row in rows
                for command in row_commands(row)]
    return list(dict.fromkeys(commands))


def overrides(argv: list[str]) -> list[str]:
    """The settings a command changes: its flags but --config/--experiment, and each later --config file."""
    flags = [arg for arg in argv if arg.startswith("--") and arg not in ("--config", "--experiment")]
    files = [value for flag, value in zip(argv, argv[1:]) if flag == "--config"][1:]
    return flags + files


def step_runs(commands: list[str]) -> set[str]:
    """The ``fit`` commands that run a training step: the first to set each step-changing override."""
    seen, runs = set(), set()
    for command in commands:
        argv = shlex.split(command)[2:]
        new = {flag for flag in overrides(argv) if STEP_CHANGING.search(flag)} - seen
        if argv[0] == "fit" and new:
            runs.add(command)
            seen |= new
    return runs


# Overrides whose value builds nothing new on generated data: shrinking drops weights, a fit
# reads init_checkpoint only when it starts, the rest are numbers or another split's files.
VALUE_ONLY = re.compile(r"\.(weights|init_checkpoint|split|lr|T_max|dropout)$|\.max_epochs$")


def instantiations(commands: list[str], runs: set[str]) -> set[str]:
    """The other ``fit`` commands worth building: those setting an override (or a later config
    file) no earlier built command of the same config set, values aside (``VALUE_ONLY``). The
    rest differ from one of those in values only, or are a config file as it is, which
    test_configs runs."""
    built, chosen = [], set()
    for command in commands:
        argv = shlex.split(command)[2:]
        if argv[0] != "fit":
            continue
        keys, config = {key for key in overrides(argv) if not VALUE_ONLY.search(key)}, argv[2]
        if command not in runs and (not keys or any(config == other and keys <= seen for other, seen in built)):
            continue
        built.append((config, keys))
        chosen |= {command} - runs
    return chosen


COMMANDS = page_commands()
RUNS = step_runs(COMMANDS)
BUILDS = instantiations(COMMANDS, RUNS)


def test_every_row_has_a_command_or_says_why_not() -> None:
    tables = table_rows(PAGE.read_text())
    assert len(tables) == 9, sorted(tables)  # two-stream 1(a), 1(b), 2, 3, 4; I3D 2, 3, 4, 5
    for title, rows in tables.items():
        assert rows, f"docs/paper_rows.md: table {title!r} has no rows"
        for cells in rows:
            assert len(cells) == 4, f"{title}: a row without 4 cells: {cells}"
            assert row_commands(cells) or NOT_REPRODUCIBLE in cells[3], f"{title}: {cells[0]!r} has no command, no why"
    for command in COMMANDS:
        argv = shlex.split(command)
        assert argv[2] in ("fit", "test") and argv[3] == "--config", command
        assert all((ROOT / value).is_file() for flag, value in zip(argv, argv[1:]) if flag == "--config"), command


def test_the_readme_links_the_table() -> None:
    assert "docs/paper_rows.md" in (ROOT / "README.md").read_text()


@pytest.fixture(scope="module")
def ucf101_both_ways(tmp_path_factory) -> tuple:
    """A tiny UCF-101 with forward and backward DIS flow."""
    return generate_with_flow(tmp_path_factory.mktemp("ucf101_both_ways"), "ucf101", backward=True,
                              videos_per_class=4, **TINY)


def printed_config(argv: list[str]) -> dict:
    """The configuration ``argv`` parses to (``--print_config``), as a dict."""
    out = io.StringIO()
    with contextlib.redirect_stdout(out), pytest.raises(SystemExit) as exit_info:
        cli_main([*argv, "--print_config"])
    assert exit_info.value.code in (None, 0), f"{shlex.join(argv)}: {exit_info.value.code}"
    return yaml.safe_load(out.getvalue())


@pytest.mark.slow
@pytest.mark.parametrize("command", COMMANDS)
def test_command_runs_on_generated_data(command: str, ucf101_both_ways, request, generated, tmp_path_factory,
                                        tmp_path, monkeypatch) -> None:
    argv = shlex.split(command)[2:]
    monkeypatch.chdir(ROOT)  # the page's config paths are relative to the checkout
    config = printed_config(argv)
    if command not in RUNS | BUILDS:
        return  # parsed only: see instantiations(); test commands load checkpoints other rows train
    name = config.get("experiment") or Path(argv[2]).stem
    folder = tmp_path / "printed"
    folder.mkdir()
    (folder / f"{name}.yaml").write_text(yaml.safe_dump(config))
    monkeypatch.setattr(configs_test, "CONFIGS", folder)
    datasets = {source.__name__: ucf101_both_ways if source is UCF101
                else shared_dataset(source, request, generated, tmp_path_factory)
                for source in config_sources(name)}
    tiny = tiny_config(name, datasets, tmp_path)
    if command in RUNS:
        cli = cli_main(["fit", "--config", str(tiny)])
        assert cli.trainer.state.finished and cli.trainer.global_step == 1, command
        return
    shrunk = yaml.safe_load(tiny.read_text())
    for key in ("ckpt_path", "weights_only"):  # fit's arguments; run=False parses without subcommands
        shrunk.pop(key, None)
    tiny.write_text(yaml.safe_dump(shrunk))
    cli = cli_main(["--config", str(tiny)], run=False)
    cli.datamodule.setup("fit")
