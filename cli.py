"""Command line: ``python cli.py fit|validate|test|predict --config configs/X.yaml``.

``python cli.py classify|features|export ...`` run a trained network on videos outside a
Trainer (``inference/``).

The model and the data are chosen in the YAML by ``class_path`` (any LightningModule of
``lightning_modules/``, any DataModule of ``datamodules/``). The number of classes is
said once, by the data's class list: it is linked into the model, which builds its
networks with it. What the networks expect as input (channels, frames, crop size,
normalisation) goes the other way: the DataModule adopts the model's ``input_specs``.

An experiment keeps its checkpoints in ``<trainer.default_root_dir>/runs/<experiment>/checkpoints``
(``runs/two_stream_ucf/checkpoints`` from the current directory), where the experiment is
``--experiment`` or else the config file's name, so that a later process with the same
config finds them: ``--ckpt_path last`` and ``best`` work in a new process. validate, test
and predict refuse networks that nobody trained (``lightning_modules.provenance``).

Logs go to a folder per run (``runs/quickstart/fit-<date>-<time>``, ``test-...``), so no
stage deletes another's. What cannot work is refused in one line before anything runs: a
checkpoint file that is missing, empty or truncated, a GPU where there is none. A fit that
trained on no batch exits 1; Ctrl-C and SIGTERM stop with one line, exit 130 and 143, after
saving last.ckpt.
"""

import signal
import sys
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import torch
from jsonargparse import Namespace
from pytorch_lightning import Callback, LightningDataModule, LightningModule
from pytorch_lightning.callbacks import LearningRateMonitor, ModelCheckpoint
from pytorch_lightning.cli import LightningArgumentParser, LightningCLI
from pytorch_lightning.utilities.exceptions import MisconfigurationException, SIGTERMException

from lightning_modules.checkpoint_io import CheckpointWriteError, write_checkpoints_complete
from lightning_modules.checkpoints import (
    CheckpointFileError,
    CheckpointNotFoundError,
    check_checkpoint_file,
    last_path,
    resolve_ckpt_path,
)
from lightning_modules.gpu_settings import GPUSettings
from lightning_modules.interrupt import RedeliverCtrlC
from lightning_modules.loggers import log_folder_per_run, release_log_folders
from lightning_modules.provenance import RefuseUntrainedEvaluation, UntrainedNetworkError, require_trained
from lightning_modules.recipe import SaveRecipe


class TrainingBatches(Callback):
    """How many training batches this process ran (a resumed fit counts from 0 too)."""

    def __init__(self) -> None:
        self.count = 0

    def on_train_batch_end(self, *args: Any) -> None:
        self.count += 1


class VideoCLI(LightningCLI):
    def add_arguments_to_parser(self, parser: LightningArgumentParser) -> None:
        parser.link_arguments("data.num_classes", "model.init_args.num_classes", apply_on="instantiate")
        parser.add_argument("--experiment", type=str | None, default=None,
                            help="Name of the experiment, its checkpoint folder's: "
                                 "<trainer.default_root_dir>/runs/<experiment>/checkpoints. Default: the config "
                                 "file's name (configs/two_stream_ucf.yaml: two_stream_ucf).")
        # Always on, configurable under `checkpoint:`, `last_checkpoint:` and `lr_monitor:`:
        # the best checkpoint by validation top-1, and last.ckpt after every training epoch
        # (also when validation runs less often) and on Ctrl-C or a crash (Lightning's own
        # save_last only follows a new best), which is what `--ckpt_path last` resumes from.
        # Both go to the experiment's folder unless their dirpath is set.
        parser.add_lightning_class_args(ModelCheckpoint, "checkpoint")
        parser.set_defaults({
            "checkpoint.monitor": "val/acc", "checkpoint.mode": "max", "checkpoint.auto_insert_metric_name": False,
            "checkpoint.filename": "epoch{epoch:03d}-acc{val/acc:.4f}",
        })
        parser.add_lightning_class_args(ModelCheckpoint, "last_checkpoint")
        parser.set_defaults({
            "last_checkpoint.filename": ModelCheckpoint.CHECKPOINT_NAME_LAST, "last_checkpoint.save_top_k": 1,
            "last_checkpoint.save_on_exception": True, "last_checkpoint.enable_version_counter": False,
            "last_checkpoint.save_on_train_epoch_end": True,
        })
        parser.add_lightning_class_args(LearningRateMonitor, "lr_monitor")
        parser.set_defaults({"lr_monitor.logging_interval": "epoch"})
        # Always on too, nothing changes off CUDA: channels-last networks and inputs,
        # cudnn.benchmark and TF32 matmuls on GPUs (lightning_modules.gpu_settings); each one
        # can be turned off under `gpu_settings:` (`--gpu_settings.channels_last false`).
        parser.add_lightning_class_args(GPUSettings, "gpu_settings")

    def _parse_ckpt_path(self) -> None:
        """A checkpoint file checked first: Lightning reads its hyper-parameters here, before anything else."""
        subcommand = self.config.get("subcommand")
        ckpt_path = self.config[subcommand].get("ckpt_path") if subcommand else None
        if ckpt_path not in (None, "last", "best"):
            check_ckpt_path(ckpt_path, subcommand)
        super()._parse_ckpt_path()

    def before_instantiate_classes(self) -> None:
        config = self.config.get(str(self.subcommand), self.config)
        if config.trainer.get("precision") is None:
            config.trainer.precision = default_precision(config.trainer.get("accelerator") or "auto")
        try:
            folder = place_experiment_files(config)
            if self.subcommand is not None:
                check_trainer_settings(config.trainer)
                self.log_folders = log_folder_per_run(config.trainer.get("logger"), self.subcommand)
        except ValueError as error:
            sys.exit(f"error: {error}")
        # config.yaml beside the checkpoints and scores, not in the logger's folder (W&B's is
        # runs/ itself, shared by every experiment). An absolute name wins in os.path.join.
        self.save_config_kwargs = {**self.save_config_kwargs, "config_filename": str(folder / "config.yaml")}
        self.experiment_folder = folder

    @contextmanager
    def refusal_leaves_no_log_folder(self) -> Iterator[None]:
        """Until the run starts, a refusal (any exit) removes the log folders made for it."""
        try:
            yield
        except BaseException:
            release_log_folders(getattr(self, "log_folders", []))
            raise

    def instantiate_classes(self) -> None:
        with self.refusal_leaves_no_log_folder():
            self._instantiate_classes()

    def _instantiate_classes(self) -> None:
        # A missing dataset root or annotation file is a config typo: one line naming the
        # setting, not a traceback from inside the DataModule (jsonargparse wraps it).
        try:
            try:
                super().instantiate_classes()
            except MisconfigurationException as error:  # a Trainer setting Lightning cannot honour
                sys.exit(f"error: trainer: {' '.join(str(error).split())}")
            write_checkpoints_complete(self.trainer)
            if not self.trainer.loggers:  # --trainer.logger false: nothing to send learning rates to
                self.trainer.callbacks = [c for c in self.trainer.callbacks if not isinstance(c, LearningRateMonitor)]
            # The data reads what the networks declare (and the modality, which the configs say
            # once, on the networks): adopted now, so a root that modality needs is checked here.
            specs = getattr(self.model, "input_specs", None)
            if specs is not None and hasattr(self.datamodule, "set_input_specs"):
                self.datamodule.set_input_specs(specs)
            # Every checkpoint carries what inference needs (class names, model and data settings):
            # lightning_modules.recipe.
            self.trainer.callbacks.append(SaveRecipe(self._get(self.config, "model")))
        except (OSError, ValueError) as error:
            missing = _missing_path(error)
            if missing is None:
                raise
            sys.exit(f"error: {missing}")

    def before_run(self) -> None:
        with self.refusal_leaves_no_log_folder():
            self._before_run()

    def _before_run(self) -> None:
        """``last``/``best`` as files of the experiment's folder; no evaluation of untrained networks.

        Checked here, before the data is set up or a W&B run starts, with one line saying
        what is missing."""
        config = self.config_init[self.subcommand]
        asked = config.ckpt_path
        try:
            config.ckpt_path = resolve_ckpt_path(config.ckpt_path, config.checkpoint, config.last_checkpoint,
                                                 self.subcommand)
            if self.subcommand != "fit":
                require_trained(self.model, self.subcommand, config.ckpt_path)
        except (CheckpointNotFoundError, CheckpointFileError) as error:
            sys.exit(f"error: --ckpt_path {config.ckpt_path}: {error}")
        except UntrainedNetworkError as error:
            sys.exit(f"error: {error}")
        if config.ckpt_path not in (None, asked):  # the file last or best named (a path given is checked)
            check_ckpt_path(config.ckpt_path, self.subcommand)
        # Made only now that the run goes ahead: SaveConfigCallback writes config.yaml here.
        self.experiment_folder.mkdir(parents=True, exist_ok=True)
        # Set on the object, not as the module's score_file: a checkpoint's saved
        # hyper-parameters override the config when --ckpt_path is a file, and an absolute
        # path saved at fit time would send a later test's scores to the fit's folder.
        video_test = getattr(self.model, "video_test", None)
        if video_test is not None:
            video_test.directory = self.experiment_folder

    # LightningCLI calls before_<subcommand>() before it runs the subcommand.
    before_fit = before_validate = before_test = before_predict = before_run

    def after_fit(self) -> None:
        """A fit that trained on nothing is not a success (3 CPU processes sharing 4 videos, an
        empty split, a resumed fit already at max_epochs)."""
        ran = sum(callback.count for callback in self.trainer.callbacks if isinstance(callback, TrainingBatches))
        if ran:
            return
        trainer = self.trainer
        if trainer.ckpt_path and trainer.max_epochs is not None and trainer.current_epoch >= trainer.max_epochs:
            sys.exit(f"error: fit trained on no batch: {trainer.ckpt_path} has already done trainer.max_epochs="
                     f"{trainer.max_epochs}; raise --trainer.max_epochs to train on")
        sys.exit(f"error: fit trained on no batch: the training loader gave {trainer.num_training_batches} "
                 "batches on this process; check the training split, data.init_args.loader.batch_size and limit_train_batches")

    def _run_subcommand(self, subcommand: str) -> None:
        """Ctrl-C and SIGTERM end the run with one line and exit 130 and 143 (the shell's
        128 + signal); Lightning has saved last.ckpt by then (``save_on_exception``)."""
        try:
            super()._run_subcommand(subcommand)
        except CheckpointWriteError as error:  # Lightning tried again on the way out: the same reason
            sys.exit(f"error: {error}")
        except SIGTERMException:
            self._stopped(subcommand, "SIGTERM", 128 + signal.SIGTERM)
        except SystemExit as exit_:
            # Lightning handles KeyboardInterrupt with exit(1), raised while handling it.
            if not isinstance(exit_.__context__, KeyboardInterrupt):
                raise
            self._stopped(subcommand, "Ctrl-C (SIGINT)", 128 + signal.SIGINT)

    def _stopped(self, subcommand: str, by: str, status: int) -> None:
        line = f"{subcommand} stopped by {by}"
        if subcommand == "fit":
            last = last_path(self.config_init[subcommand].last_checkpoint)
            line += (f"; resume with --ckpt_path last ({last})" if last.is_file()
                     else " before its first checkpoint")
        print(line, file=sys.stderr)
        raise SystemExit(status)


def default_precision(accelerator: str, cuda: bool | None = None, bf16: bool | None = None) -> str:
    """Mixed precision where the run will be on a GPU, fp32 everywhere else.

    Decided from the accelerator the run asks for, not from whether the machine has a
    GPU: ``accelerator: cpu`` (the quickstart) on a GPU machine stays fp32, because bf16
    autocast on a CPU is slow and trains tiny networks less stably. bf16 needs Ampere or
    newer; older GPUs get fp16 with loss scaling.
    """
    cuda = torch.cuda.is_available() if cuda is None else cuda
    if str(accelerator) not in ("gpu", "cuda") and not (str(accelerator) == "auto" and cuda):
        return "32-true"
    bf16 = (cuda and torch.cuda.is_bf16_supported()) if bf16 is None else bf16
    return "bf16-mixed" if bf16 else "16-mixed"


def check_trainer_settings(trainer: Namespace, cuda: bool | None = None) -> None:
    """Refuse (``ValueError`` naming the setting) a GPU accelerator without a GPU.

    Several devices on the CPU stay allowed: DDP over gloo processes is how the evaluation's
    exactness under DDP is tested without a GPU. A CPU fit whose ranks get no training batch
    (tiny data split over too many processes) exits 1 after the fit (``no batch`` above)."""
    cuda = torch.cuda.is_available() if cuda is None else cuda
    accelerator = str(trainer.get("accelerator") or "auto")
    if accelerator in ("gpu", "cuda") and not cuda:
        raise ValueError(f"--trainer.accelerator {accelerator}: no CUDA GPU is visible here "
                         "(torch.cuda.is_available() is False); use cpu, or auto to take a GPU where there is one")


def check_ckpt_path(ckpt_path: str, stage: str) -> None:
    """Exit with one line if ``ckpt_path`` is a local file ``stage`` cannot load (URLs and
    Lightning's own names, ``hpc`` and ``registry:...``, are Lightning's to resolve)."""
    if "://" in ckpt_path or ckpt_path == "hpc" or ckpt_path.startswith("registry"):
        return
    try:
        check_checkpoint_file(ckpt_path, stage)
    except CheckpointFileError as error:
        sys.exit(f"error: --ckpt_path {ckpt_path}: {error}")


def experiment_name(config: Namespace) -> str:
    """``experiment``, else the name of the one config file (``configs/X.yaml``: ``X``)."""
    if config.get("experiment"):
        return config.experiment
    files = config.get("config") or []
    if len(files) != 1:
        given = "no config file" if not files else f"{len(files)} config files"
        raise ValueError(f"with {given}, name the experiment (--experiment NAME, or `experiment:` in the "
                         "config); its checkpoints go to runs/NAME/checkpoints")
    return Path(str(files[0])).stem


def place_experiment_files(config: Namespace) -> Path:
    """Put what an experiment writes in its folder, ``runs/<experiment>``, and return it (absolute).

    Checkpoints whose folder is not set go to ``checkpoints/`` there; config.yaml and the
    relative score files go there too (``before_run``). Derived from the config
    alone, so every DDP rank and every later process agrees; never the logger's folder: W&B
    makes a new one each run, and its ``log_dir`` is ``runs/`` itself, where two
    experiments' test scores would overwrite each other.
    """
    root = Path(config.trainer.get("default_root_dir") or ".")
    try:
        folder = root / "runs" / experiment_name(config)
    except ValueError:
        if config.checkpoint.dirpath is None:
            raise
        folder = Path(config.checkpoint.dirpath).parent
    if config.checkpoint.dirpath is None:
        config.checkpoint.dirpath = str(folder / "checkpoints")
    if config.last_checkpoint.dirpath is None:
        config.last_checkpoint.dirpath = config.checkpoint.dirpath
    return folder.resolve()


def _missing_path(error: BaseException | None) -> OSError | None:
    """The FileNotFoundError (or wrong kind of path) behind ``error``, if that is its cause."""
    seen = set()
    while error is not None and id(error) not in seen:
        if isinstance(error, (FileNotFoundError, NotADirectoryError, IsADirectoryError)):
            return error
        seen.add(id(error))
        error = error.__cause__ or error.__context__
    return None


# Commands on a trained network outside a Trainer: each is ``inference/<name>.py``'s ``main``.
INFERENCE_COMMANDS = ("classify", "features", "export")


def run_inference_command(name: str, args: list[str]) -> int:
    """``python cli.py classify|features|export ...``: the command's exit status."""
    import importlib

    return importlib.import_module(f"inference.{name}").main(args)


def cli_main(args: list[str] | None = None, run: bool = True) -> LightningCLI:
    """Build (and by default run) the CLI; ``args`` lets tests call it in-process."""
    return VideoCLI(
        LightningModule,
        LightningDataModule,
        subclass_mode_model=True,
        subclass_mode_data=True,
        # precision: None means default_precision(accelerator), chosen before instantiation.
        trainer_defaults={"precision": None,
                          "callbacks": [RefuseUntrainedEvaluation(), TrainingBatches(), RedeliverCtrlC()]},
        save_config_kwargs={"overwrite": True},
        args=args,
        run=run,
    )


if __name__ == "__main__":
    if len(sys.argv) > 1 and sys.argv[1] in INFERENCE_COMMANDS:
        sys.exit(run_inference_command(sys.argv[1], sys.argv[2:]))
    cli_main()
