"""Command line entry point: ``python cli.py fit|validate|test|predict --config configs/X.yaml``."""

from pytorch_lightning import LightningDataModule, LightningModule
from pytorch_lightning.cli import LightningCLI


def cli_main(args: list[str] | None = None, run: bool = True) -> LightningCLI:
    """Build the LightningCLI; ``args`` lets tests call it without a subprocess."""
    return LightningCLI(
        LightningModule,
        LightningDataModule,
        subclass_mode_model=True,
        subclass_mode_data=True,
        args=args,
        run=run,
    )


if __name__ == "__main__":
    cli_main()
