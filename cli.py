"""Command line: ``python cli.py fit|validate|test|predict --config configs/X.yaml``.

The model and the data are chosen in the YAML by ``class_path`` (any LightningModule of
``lightning_modules/``, any DataModule of ``datamodules/``). The number of classes is
said once, by the data's class list: it is linked into the model, which builds its
networks with it. What the networks expect as input (channels, frames, crop size,
normalisation) goes the other way: the DataModule adopts the model's ``input_specs``.
"""

import sys

import torch
from pytorch_lightning import LightningDataModule, LightningModule
from pytorch_lightning.callbacks import LearningRateMonitor, ModelCheckpoint
from pytorch_lightning.cli import LightningArgumentParser, LightningCLI

from lightning_modules.gpu_settings import GPUSettings


class VideoCLI(LightningCLI):
    def add_arguments_to_parser(self, parser: LightningArgumentParser) -> None:
        parser.link_arguments("data.num_classes", "model.init_args.num_classes", apply_on="instantiate")
        # Always on, configurable under `checkpoint:`, `last_checkpoint:` and `lr_monitor:`:
        # the best checkpoint by validation top-1, and last.ckpt after every epoch and on
        # Ctrl-C or a crash (Lightning's own save_last only follows a new best), which is
        # what `--ckpt_path last` resumes from.
        parser.add_lightning_class_args(ModelCheckpoint, "checkpoint")
        parser.set_defaults({
            "checkpoint.monitor": "val/acc", "checkpoint.mode": "max", "checkpoint.auto_insert_metric_name": False,
            "checkpoint.filename": "epoch{epoch:03d}-acc{val/acc:.4f}",
        })
        parser.add_lightning_class_args(ModelCheckpoint, "last_checkpoint")
        parser.set_defaults({
            "last_checkpoint.filename": ModelCheckpoint.CHECKPOINT_NAME_LAST, "last_checkpoint.save_top_k": 1,
            "last_checkpoint.save_on_exception": True, "last_checkpoint.enable_version_counter": False,
        })
        parser.add_lightning_class_args(LearningRateMonitor, "lr_monitor")
        parser.set_defaults({"lr_monitor.logging_interval": "epoch"})
        # Always on too, nothing changes off CUDA: channels-last networks and inputs,
        # cudnn.benchmark and TF32 matmuls on GPUs (lightning_modules.gpu_settings); each one
        # can be turned off under `gpu_settings:` (`--gpu_settings.channels_last false`).
        parser.add_lightning_class_args(GPUSettings, "gpu_settings")

    def instantiate_classes(self) -> None:
        # A missing dataset root or annotation file is a config typo: one line naming the
        # setting, not a traceback from inside the DataModule (jsonargparse wraps it).
        try:
            super().instantiate_classes()
        except (OSError, ValueError) as error:
            missing = _missing_path(error)
            if missing is None:
                raise
            sys.exit(f"error: {missing}")


def _missing_path(error: BaseException | None) -> OSError | None:
    """The FileNotFoundError (or wrong kind of path) behind ``error``, if that is its cause."""
    seen = set()
    while error is not None and id(error) not in seen:
        if isinstance(error, (FileNotFoundError, NotADirectoryError, IsADirectoryError)):
            return error
        seen.add(id(error))
        error = error.__cause__ or error.__context__
    return None


def cli_main(args: list[str] | None = None, run: bool = True) -> LightningCLI:
    """Build (and by default run) the CLI; ``args`` lets tests call it in-process."""
    return VideoCLI(
        LightningModule,
        LightningDataModule,
        subclass_mode_model=True,
        subclass_mode_data=True,
        # bf16 on a GPU, fp32 on CPU.
        trainer_defaults={"precision": "bf16-mixed" if torch.cuda.is_available() else "32-true"},
        save_config_kwargs={"overwrite": True},
        args=args,
        run=run,
    )


if __name__ == "__main__":
    cli_main()
