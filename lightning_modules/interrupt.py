"""A Ctrl-C that is never lost.

Python turns SIGINT into a KeyboardInterrupt in whatever code runs when it arrives. If that
code is one that CPython calls after a fork (logging releases its lock there), the exception
is printed as "Exception ignored in ..." and dropped. A DataLoader forks its workers at
every epoch, so a Ctrl-C landing then was lost and the fit trained on (seen on the first of
a series of Ctrl-Cs sent as an epoch's last.ckpt appeared).
"""

import signal
import threading
from types import FrameType
from typing import Any

import pytorch_lightning as pl
from pytorch_lightning.callbacks import Callback


class RedeliverCtrlC(Callback):
    """SIGINT raises KeyboardInterrupt as Python's own handler does, and is remembered: the next
    batch to start or end raises it again, and Lightning stops as after any Ctrl-C.

    Installed only over Python's default handler, from the main thread: a shell's background
    job ignores SIGINT, and a caller's own handler stays.
    """

    def __init__(self) -> None:
        self.received = False
        self._previous: Any = None

    def _on_sigint(self, signum: int, frame: FrameType | None) -> None:
        self.received = True
        raise KeyboardInterrupt

    def setup(self, trainer: pl.Trainer, pl_module: pl.LightningModule, stage: str) -> None:
        self.received = False
        if threading.current_thread() is threading.main_thread() and \
                signal.getsignal(signal.SIGINT) is signal.default_int_handler:
            self._previous = signal.signal(signal.SIGINT, self._on_sigint)

    def teardown(self, trainer: pl.Trainer, pl_module: pl.LightningModule, stage: str) -> None:
        # Lightning ignores SIGINT while it shuts down after one: only our own handler is undone.
        if self._previous is not None and signal.getsignal(signal.SIGINT) == self._on_sigint:
            signal.signal(signal.SIGINT, self._previous)
        self._previous = None

    def _raise_if_received(self, *args: Any) -> None:
        if self.received:
            raise KeyboardInterrupt

    on_train_batch_start = on_train_batch_end = _raise_if_received
    on_validation_batch_start = on_validation_batch_end = _raise_if_received
    on_test_batch_start = on_test_batch_end = _raise_if_received
    on_predict_batch_start = on_predict_batch_end = _raise_if_received
