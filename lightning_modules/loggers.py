"""Loggers that lose nothing: a folder of its own for every run, and a W&B logger that never blocks.

CSV and TensorBoard logs go to a new folder per process, named after the stage and the
time it started (``runs/quickstart/fit-20261206-081500``, then ``test-...``), so that a
test, a resumed fit or a rerun never writes into an earlier run's folder; Lightning's
CSV writer deletes the ``metrics.csv`` it finds there (``log_folder_per_run``). W&B runs
get a new id each time by themselves.

The W&B logger logs offline when it cannot log online.

Lightning's ``WandbLogger`` calls ``wandb.init`` with the mode it is given. Without an
API key that either asks for one (a terminal) or fails (a batch job), and with a key but
no route to the server (a compute node without internet) wandb keeps retrying. This
logger chooses the mode just before ``wandb.init``, on rank 0 only: online when there are
credentials and the server answers a TCP connect within a few seconds, offline otherwise,
saying so in one line. An offline run is uploaded later with ``wandb sync``.

It also keeps secrets out of the run's config: hyper-parameters whose name looks like a
credential, or whose value is the value of such an environment variable, are dropped.
"""

import importlib
import os
import re
import socket
import threading
import time
import urllib.request
from argparse import Namespace
from collections.abc import Mapping
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

from pytorch_lightning.loggers import CSVLogger, TensorBoardLogger, WandbLogger
from pytorch_lightning.loggers.logger import rank_zero_experiment
from pytorch_lightning.utilities import rank_zero_info, rank_zero_only, rank_zero_warn

CONNECT_TIMEOUT = 3.0  # seconds; a reachable server answers a TCP connect well within this
OFFLINE_MODES = ("offline", "dryrun", "disabled")
# Not a bare "key": batch keys and sort keys are ordinary hyper-parameters here.
SECRET_NAME = re.compile(r"(api|access|private|secret|auth)[_-]?key|secret|token|passw(or)?d|credential", re.I)


def run_version(folder: Path, stage: str, started: float | None = None, reserve: bool = True) -> str:
    """``<stage>-<YYYYmmdd-HHMMSS>`` of ``started`` (default: now), the first such name that is
    not yet a folder in ``folder`` (``-2``, ``-3``, ... for runs started within one second).

    ``reserve`` creates that folder, and the name is taken only if this process created it:
    two jobs started in the same second on one experiment would otherwise both pick the same
    name, and Lightning's CSV writers would then rewrite each other's ``metrics.csv``."""
    name = f"{stage}-{time.strftime('%Y%m%d-%H%M%S', time.localtime(started))}"
    if reserve:
        folder.mkdir(parents=True, exist_ok=True)
    count = 1
    while True:
        candidate = name if count == 1 else f"{name}-{count}"
        if reserve:
            try:
                (folder / candidate).mkdir()
                return candidate
            except FileExistsError:
                pass
        elif not (folder / candidate).exists():
            return candidate
        count += 1


def _logger_class(class_path: str) -> type | None:
    module, _, name = class_path.rpartition(".")
    try:
        return getattr(importlib.import_module(module), name)
    except (ImportError, AttributeError):
        return None


def log_folder_per_run(logger: Any, stage: str, key: str = "trainer.logger") -> list[Path]:
    """Give each CSV and TensorBoard logger in the config ``logger`` (a ``class_path`` /
    ``init_args`` namespace, a list of them, or a bool) a version folder of its own for this
    ``stage``'s run (``run_version``), and return the folders made for it, deepest first
    (``release_log_folders`` removes them if the run is refused before it starts).

    A version the config sets is kept while its folder holds nothing; one that holds an
    earlier run's logs is refused (``ValueError`` naming ``key``), since Lightning's CSV
    writer would delete that run's ``metrics.csv``. DDP ranks may name different folders:
    only rank 0 writes, and only rank 0 reserves its folder (``run_version``). Loggers that
    share a parent folder share the run's version.
    """
    unversioned = []
    for i, entry in enumerate(logger if isinstance(logger, list) else [logger]):
        if not hasattr(entry, "class_path"):
            continue  # true, false or none: Lightning's default logger numbers its versions itself
        kind = _logger_class(entry.class_path)
        if kind is None or not issubclass(kind, (CSVLogger, TensorBoardLogger)):
            continue
        args = entry.init_args
        name = args.get("name")
        folder = Path(args.get("save_dir") or ".") / (name if name is not None else "lightning_logs")
        version = args.get("version")
        if version is None:
            unversioned.append((args, folder))
        elif (folder / str(version)).is_dir() and any((folder / str(version)).iterdir()):
            where = f"{key}[{i}]" if isinstance(logger, list) else key
            raise ValueError(f"{where}.init_args.version: {folder / str(version)} holds an earlier run's logs, "
                             f"which this {stage} would overwrite; leave version unset and every run logs to a "
                             f"folder of its own, {folder}/<stage>-<date>-<time>")
    reserve = rank_zero_only.rank == 0
    versions: dict[Path, str] = {}
    made: list[Path] = []
    for args, folder in unversioned:
        if folder not in versions:
            if reserve:
                made[:0] = [parent for parent in (folder, *folder.parents) if not parent.exists()]
            versions[folder] = run_version(folder, stage, reserve=reserve)
            if reserve:
                made.insert(0, folder / versions[folder])
        args.version = versions[folder]
    return made


def release_log_folders(folders: list[Path]) -> None:
    """Remove those of ``folders`` (deepest first) that are still empty: a run refused before
    it started leaves no log folder behind, and nothing another job put there goes."""
    for folder in folders:
        try:
            folder.rmdir()
        except OSError:
            pass


def host_reachable(url: str, timeout: float = CONNECT_TIMEOUT) -> bool:
    """Whether a TCP connection to ``url``'s host and port (or to the proxy the environment
    sets for it) opens within ``timeout`` seconds.

    The connect runs in a daemon thread because name resolution ignores socket timeouts:
    a resolver that never answers must not hold the run back either.
    """
    parts = urlsplit(url)
    proxy = urllib.request.getproxies().get(parts.scheme)
    if proxy and not urllib.request.proxy_bypass(parts.hostname or ""):
        parts = urlsplit(proxy if "://" in proxy else f"http://{proxy}")
    address = (parts.hostname, parts.port or (443 if parts.scheme == "https" else 80))
    opened: list[bool] = []

    def connect() -> None:
        try:
            socket.create_connection(address, timeout=timeout).close()
            opened.append(True)
        except OSError:
            pass

    thread = threading.Thread(target=connect, daemon=True)
    thread.start()
    thread.join(timeout)
    return bool(opened)


def has_credentials(base_url: str) -> bool:
    """Whether wandb would find credentials for ``base_url`` without prompting: a session
    login, ``WANDB_API_KEY``, an identity token file, ``~/.netrc`` or wandb's settings file.

    Asks wandb's own lookup (``wandb.sdk.lib.wbauth``, as of wandb 0.31), so it agrees with
    ``wandb.init``; nothing goes over the network, nothing is prompted or saved.
    """
    from wandb.sdk.lib import wbauth

    return wbauth.authenticate_session(host=base_url, source="OfflineFallbackWandbLogger", prompt=False,
                                       update_session=False) is not None


def without_secrets(params: Mapping[str, Any]) -> tuple[dict[str, Any], list[str]]:
    """``params`` without entries that look like credentials, and the dotted names dropped.

    An entry goes if its name matches ``SECRET_NAME`` or its value is the value of an
    environment variable whose name does (a key pasted into an innocent-looking field).
    """
    secrets = {value for name, value in os.environ.items() if value and SECRET_NAME.search(name)}
    dropped: list[str] = []

    def clean(value: Any, path: str) -> Any:
        if isinstance(value, Mapping):
            items = [(name, item, f"{path}{name}") for name, item in value.items()]
        elif isinstance(value, (list, tuple)):
            items = [(i, item, f"{path}{i}") for i, item in enumerate(value)]
        else:
            return value
        kept = []
        for name, item, dotted in items:
            if (isinstance(name, str) and SECRET_NAME.search(name)) or (isinstance(item, str) and item in secrets):
                dropped.append(dotted)
            else:
                kept.append((name, clean(item, dotted + ".")))
        return dict(kept) if isinstance(value, Mapping) else type(value)(item for _, item in kept)

    return clean(params, ""), dropped


class OfflineFallbackWandbLogger(WandbLogger):
    """Lightning's ``WandbLogger`` (same arguments) that logs offline instead of blocking.

    Before ``wandb.init`` (rank 0, first use of ``experiment``) it keeps the requested mode
    when that is offline or disabled (``offline=True``, ``mode``, ``WANDB_MODE``, ``wandb
    offline``); otherwise it goes offline, with one line saying where the run is and how to
    upload it, when wandb finds no API key, or finds one but the server (``WANDB_BASE_URL``,
    default api.wandb.ai) does not accept a TCP connection within 3 seconds. Offline runs
    land in ``<save_dir>/wandb/offline-run-*``.

    Hyper-parameters that look like credentials are not logged (see ``without_secrets``).
    """

    @property
    @rank_zero_experiment
    def experiment(self) -> Any:
        reason = None
        if self._experiment is None:
            if self._offline:
                # Lightning says so through WANDB_MODE, which wandb ignores once its settings
                # are loaded (as _offline_reason does): tell wandb.init directly.
                self._wandb_init["mode"] = "offline"
            reason = self._offline_reason()
            if reason is not None:
                self._wandb_init["mode"] = "offline"
            if self._wandb_init.get("anonymous") is None:
                self._wandb_init.pop("anonymous", None)  # deprecated in wandb; passing even None warns
        run = super().experiment
        if reason is not None:
            run_dir = getattr(run.settings, "sync_dir", None) or os.path.join(self.save_dir or ".", "wandb")
            rank_zero_info(f"W&B: {reason}: logging offline to {run_dir}; upload later with `wandb sync {run_dir}`")
        return run

    def _offline_reason(self) -> str | None:
        """Why this run cannot go online, or None when it can (or is not meant to)."""
        import wandb
        from wandb.sdk import wandb_setup

        if wandb.run is not None or getattr(self, "_attach_id", None) is not None:
            return None  # Lightning reuses that run
        if self._wandb_init.get("mode") in OFFLINE_MODES:
            return None
        settings = wandb_setup.singleton().settings
        if settings.mode in OFFLINE_MODES:
            return None
        if not has_credentials(settings.base_url):
            return "no API key found"
        if not host_reachable(settings.base_url):
            return f"{urlsplit(settings.base_url).hostname} unreachable"
        return None

    @rank_zero_only
    def log_hyperparams(self, params: dict[str, Any] | Namespace) -> None:
        params, dropped = without_secrets(vars(params) if isinstance(params, Namespace) else params)
        if dropped:
            rank_zero_warn(f"W&B: not logging hyper-parameters that look like credentials: {', '.join(dropped)}")
        super().log_hyperparams(params)
