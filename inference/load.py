"""A trained module ready for inference: from a checkpoint alone, or from a config (and weights).

``load_checkpoint(path)``: a checkpoint written by ``fit`` carries its recipe
(``lightning_modules.recipe``): the module is rebuilt from the recipe's model config with
nothing downloaded (every network's ``weights`` None, two-stream ``spatial_checkpoint`` /
``temporal_checkpoint`` dropped: the checkpoint's state dict replaces them) and the state
dict is loaded strictly. An older checkpoint, without a recipe, takes the model and data
settings of its experiment's ``config.yaml`` (which the CLI writes beside ``checkpoints/``),
with one warning.

``load_config(config, checkpoint=None)``: the model of a YAML config (``model:``), with its
networks' ``weights`` kept when no checkpoint is given (published weights, e.g. the I3D
port's Kinetics-400 file), or replaced by an older checkpoint's state dict (one without a
recipe). Class names come from the config's annotations when their files are here, else
from the annotations' ``label_map`` file (the Kinetics configs name
``configs/labels/kinetics400.txt``), else from the checkpoint's recipe; without any, scores
are by class index, with one ``NoClassNamesWarning``. The "untrained network" rule of
``lightning_modules.provenance`` holds: a network whose classifier nobody trained is
refused, unless its ``weights`` are a published trained classifier (a DeepMind-port I3D file
with as many classes).

Errors are one line: ``CheckpointFileError`` (a missing, empty, truncated or foreign
checkpoint, named), ``ValueError`` for the rest (a config or recipe that cannot build the
model, naming the file).
"""

from __future__ import annotations

import importlib
import warnings
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

import torch
import yaml
from pytorch_lightning import LightningDataModule, LightningModule
from pytorch_lightning.cli import LightningArgumentParser
from torch import nn

from datamodules.annotations.records import read_lines
from datamodules.datamodule import protocol_crops
from datamodules.modality import infer_modality
from datamodules.settings import EvalProtocol, FrameSampling, LoaderSettings, Roots
from datamodules.transforms import Augmentation
from inference.recipe import FlowSettings, Recipe
from lightning_modules.checkpoints import CheckpointFileError, check_checkpoint_file
from lightning_modules.recipe import RECIPE_KEY, RECIPE_VERSION, data_recipe, model_recipe
from models.i3d_port import is_port_state_dict
from models.input_spec import InputSpec

PROJECT_ROOT = Path(__file__).resolve().parents[1]
# Module arguments that load other files into a stream; a checkpoint's state dict holds their result.
STREAM_CHECKPOINTS = ("spatial_checkpoint", "temporal_checkpoint")


class NoClassNamesWarning(UserWarning):
    """Scores are by class index: neither the checkpoint nor the config names the classes."""


class NoRecipeWarning(UserWarning):
    """An older checkpoint without a recipe: its model and data settings came from its experiment's config.yaml."""


@dataclass
class Loaded:
    """A module ready for inference and what it needs to see a video as its test did.

    Args:
        module: the LightningModule, in eval mode, on the device it was loaded to.
        recipe: the model and data settings (``inference.recipe.Recipe``).
        classes: class names in label order; None: scores by class index.
    """

    module: LightningModule
    recipe: Recipe
    classes: list[str] | None

    def streams(self) -> dict[str, tuple[nn.Module, str]]:
        """Stream name (``rgb``, ``flow``, ``spatial``, ``temporal``) -> (its network, the batch key it reads)."""
        return {name: (self.module.get_submodule(attr), key) for name, (attr, key) in self.module.streams.items()}

    @property
    def input_specs(self) -> dict[str, InputSpec]:
        """Batch key -> the InputSpec of the network reading it."""
        return {key: spec for key, spec in self.module.input_specs.items() if spec is not None}

    @property
    def device(self) -> torch.device:
        return next(self.module.parameters()).device


def read_checkpoint(path: str | Path) -> dict:
    """The checkpoint at ``path`` (``weights_only``); ``CheckpointFileError`` naming it if it is unusable."""
    try:
        check_checkpoint_file(path, "test")
    except CheckpointFileError as error:
        raise CheckpointFileError(f"checkpoint {path}: {error}") from None
    # Memory-mapped: the optimizer states inference never reads stay on disk.
    return torch.load(path, map_location="cpu", weights_only=True, mmap=True)


def load_checkpoint(path: str | Path, device: str | torch.device = "cpu") -> Loaded:
    """The module of a checkpoint written by ``fit``, with its recipe (module docstring).

    Args:
        path: a Lightning checkpoint (``runs/<experiment>/checkpoints/last.ckpt``).
        device: where the module goes.

    Raises:
        CheckpointFileError: the file is missing, empty, truncated or not a Lightning checkpoint.
        ValueError: the recipe cannot rebuild a module whose state dict it is; an older
            checkpoint (no recipe) without its experiment's ``config.yaml`` (``load_older``).
    """
    checkpoint = read_checkpoint(path)
    if RECIPE_KEY not in checkpoint:
        return load_older(path, device)
    try:
        recipe = Recipe.from_dict(checkpoint[RECIPE_KEY])
    except ValueError as error:
        raise ValueError(f"checkpoint {path}: {error}") from None
    module = build_module(recipe.model, keep_weights=False, source=f"checkpoint {path}")
    load_state(module, checkpoint["state_dict"], path)
    if recipe.classes is None:
        warn_no_names(f"checkpoint {path}")
    return Loaded(module.eval().to(device), recipe, recipe.classes)


def load_older(path: str | Path, device: str | torch.device) -> Loaded:
    """A checkpoint written before checkpoints carried their recipe: the model and data settings
    of its experiment's ``config.yaml`` (``runs/<experiment>/config.yaml``, beside ``checkpoints/``,
    which the CLI writes), said in one warning; its state dict must fit that model strictly."""
    folder = Path(path).resolve().parent
    config = folder.parent / "config.yaml"
    if not experiment_config_of(config, folder):
        raise ValueError(f"checkpoint {path} holds no recipe (written before checkpoints carried their model and "
                         f"class names) and no config.yaml of its experiment is beside {folder}: give the config it "
                         "was trained with (--config X.yaml)")
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always", NoClassNamesWarning)
        loaded = load_config(config, path, device)
    for warning in caught:  # anything else load_config warned about goes on as it came
        if not issubclass(warning.category, NoClassNamesWarning):
            warnings.warn_explicit(warning.message, warning.category, warning.filename, warning.lineno)
    unnamed = "; it names no classes: scores are by class index" if loaded.classes is None else ""
    warnings.warn(f"checkpoint {path} holds no recipe (an older one): model and data settings from {config}"
                  f"{unnamed}", NoClassNamesWarning if unnamed else NoRecipeWarning, stacklevel=3)
    return loaded


def experiment_config_of(config: Path, folder: Path) -> bool:
    """Whether ``config`` is the config.yaml the CLI wrote for the checkpoints in ``folder``: its
    checkpoint callbacks' ``dirpath`` ends in the same experiment and folder names (the
    experiment may have moved since), so an unrelated config.yaml never names the classes."""
    try:
        blocks = yaml.safe_load(config.read_text(encoding="utf-8"))
    except (OSError, yaml.YAMLError):
        return False
    dirpaths = [(blocks.get(key) or {}).get("dirpath") for key in ("checkpoint", "last_checkpoint")] if isinstance(
        blocks, dict) else []
    return any(isinstance(dirpath, str) and Path(dirpath).parts[-2:] == folder.parts[-2:] for dirpath in dirpaths)


def load_config(config: str | Path, checkpoint: str | Path | None = None,
                device: str | torch.device = "cpu", classifier: bool = True) -> Loaded:
    """The model of a YAML config, with published weights or an (older) checkpoint's state dict.

    Args:
        config: a config of ``configs/`` (its ``model:`` and ``data:`` blocks are read).
        checkpoint: a checkpoint whose state dict replaces the networks' weights; its recipe,
            if it has one, gives the class names and flow settings the config cannot.
        device: where the module goes.
        classifier: the networks' classifiers will be used (classify); False (features, which
            read the pre-logits): ImageNet-inflated weights are welcome, only networks without
            any ``weights`` (random features) are refused.

    Raises:
        CheckpointFileError: the checkpoint file is unusable.
        ValueError: the config cannot build the model, the class count is unknown or
            disagrees with the checkpoint's, or a network nobody trained would be used.
    """
    config = Path(config)
    blocks = read_config(config)
    state = read_checkpoint(checkpoint) if checkpoint is not None else None
    stored = Recipe.from_dict(state[RECIPE_KEY]) if state is not None and RECIPE_KEY in state else None
    data = blocks.get("data") or {}
    found = config_data(data)
    classes = found.classes
    if stored is not None and stored.classes is not None:
        if classes is not None and classes != stored.classes:
            differ = next((f"{a!r} / {b!r}" for a, b in zip(stored.classes, classes) if a != b),
                          f"{len(stored.classes)} / {len(classes)} classes")
            raise ValueError(f"checkpoint {checkpoint} was trained on other classes than config {config} names "
                             f"(first difference, checkpoint / config: {differ})")
        classes = stored.classes
    num_classes = class_count(blocks["model"], classes, state, config, checkpoint)
    model = model_recipe(blocks["model"], num_classes)
    if state is None:
        (refuse_untrained if classifier else refuse_random)(model, config)
    module = build_module(model, keep_weights=state is None, source=f"config {config}")
    if state is not None:
        load_state(module, state["state_dict"], checkpoint)
    recipe = config_recipe(model, classes, data, found, module, stored, config)
    if stored is not None:
        refuse_other_data(recipe, stored, config, checkpoint)
    if classes is None:
        warn_no_names(f"config {config}" + (f" and checkpoint {checkpoint}" if checkpoint else ""))
    return Loaded(module.eval().to(device), recipe, classes)


# Building and loading the module.

def _parser(key: str, base: type) -> LightningArgumentParser:
    parser = LightningArgumentParser(exit_on_error=False)
    parser.add_lightning_class_args(base, key, subclass_mode=True)
    return parser


def without_downloads(model: dict) -> dict:
    """``model`` (a module config with its defaults filled in) whose networks build with random
    weights (``weights`` None) and whose streams load no other file: the state dict that
    follows replaces them, so nothing is downloaded or read for nothing."""

    def scrub(value: Any) -> Any:
        if isinstance(value, dict):
            value = {key: scrub(item) for key, item in value.items()}
            init_args = value.get("init_args")
            if "class_path" in value and isinstance(init_args, dict) and "weights" in init_args:
                value["init_args"] = {**init_args, "weights": None}
            return value
        if isinstance(value, list):
            return [scrub(item) for item in value]
        return value

    scrubbed = scrub(model)
    init_args = scrubbed.get("init_args", {})
    scrubbed["init_args"] = {key: None if key in STREAM_CHECKPOINTS else value for key, value in init_args.items()}
    return scrubbed


def build_module(model: dict, keep_weights: bool, source: str) -> LightningModule:
    """The LightningModule of ``model`` (``class_path``, ``init_args``), built as the CLI builds it.

    Args:
        model: the module's config, ``num_classes`` included.
        keep_weights: build the networks with their ``weights`` (published weights); False:
            random weights, nothing downloaded (a state dict follows).
        source: what errors name (the checkpoint or config file).
    """
    parser = _parser("model", LightningModule)
    try:
        namespace = parser.parse_object({"model": model})
        if not keep_weights:
            namespace = parser.parse_object({"model": without_downloads(namespace.model.as_dict())})
        return parser.instantiate(namespace).model
    except Exception as error:  # noqa: BLE001 - jsonargparse wraps whatever the module's __init__ raised
        raise ValueError(f"{source}: cannot build the model ({_first_line(error)})") from None


def load_state(module: LightningModule, state_dict: dict[str, torch.Tensor], path: str | Path) -> None:
    """``state_dict`` into ``module``, strictly; one line naming the file and what does not fit."""
    own = module.state_dict()
    missing = [key for key in own if key not in state_dict]
    unexpected = [key for key in state_dict if key not in own]
    wrong = [f"{key}: checkpoint {tuple(value.shape)}, model {tuple(own[key].shape)}"
             for key, value in state_dict.items() if key in own and value.shape != own[key].shape]
    problems = [f"{len(missing)} missing keys ({', '.join(missing[:3])})" if missing else "",
                f"{len(unexpected)} unexpected keys ({', '.join(unexpected[:3])})" if unexpected else "",
                f"shapes differ: {'; '.join(wrong[:3])}" if wrong else ""]
    problems = [problem for problem in problems if problem]
    if problems:
        raise ValueError(f"checkpoint {path} does not fit the model {type(module).__name__}: {'; '.join(problems)}")
    module.load_state_dict(state_dict, strict=True)


# A config's side: classes, class count, the untrained rule, the recipe.

def read_config(path: Path) -> dict:
    """The YAML's top-level blocks; ValueError naming the file when it has no usable ``model:``."""
    try:
        blocks = yaml.safe_load(path.read_text(encoding="utf-8"))
    except OSError as error:
        raise ValueError(f"config {path}: {error.strerror or error}") from None
    except yaml.YAMLError as error:
        raise ValueError(f"config {path}: not valid YAML ({_first_line(error)})") from None
    if not isinstance(blocks, dict) or not isinstance(blocks.get("model"), dict) or "class_path" not in blocks["model"]:
        raise ValueError(f"config {path}: no model block with a class_path")
    return blocks


@dataclass
class ConfigData:
    """What a config's ``data:`` block gives here.

    Args:
        datamodule: the DataModule, when its files are here.
        classes: its class names, else its annotations' ``label_map`` file's.
        problem: why the DataModule could not be built (what a missing setting is blamed on).
    """

    datamodule: LightningDataModule | None = None
    classes: list[str] | None = None
    problem: str = "the config has no data block"


def config_data(data: dict) -> ConfigData:
    """The config's DataModule when its files are here and the class names: the DataModule's,
    else the annotations' ``label_map`` file (as given, else relative to this project: the
    Kinetics configs name ``configs/labels/kinetics400.txt``)."""
    if not data:
        return ConfigData()
    try:
        parser = _parser("data", LightningDataModule)
        datamodule = parser.instantiate(parser.parse_object({"data": data})).data
    except Exception as error:  # noqa: BLE001 - the dataset is not here; its label map may be
        found = ConfigData(problem=_first_line(error))
    else:
        classes = getattr(datamodule, "classes", None)
        named = classes is not None and all(isinstance(name, str) for name in classes)
        return ConfigData(datamodule, list(classes) if named else None, problem="")
    label_map = (data.get("init_args", {}).get("annotations") or {}).get("init_args", {}).get("label_map")
    for candidate in (Path(label_map), PROJECT_ROOT / label_map) if label_map is not None else ():
        if candidate.is_file():
            found.classes = [text for _, text in read_lines(candidate)]
            break
    return found


def class_count(model: dict, classes: list[str] | None, state: dict | None, config: Path,
                checkpoint: str | Path | None) -> int | list[int]:
    """The number of classes to build the networks for: the names', the checkpoint's, or the config's."""
    saved = (state or {}).get("hyper_parameters", {}).get("num_classes")
    given = model.get("init_args", {}).get("num_classes")
    count = len(classes) if classes is not None else saved if saved is not None else given
    if count is None:
        raise ValueError(f"config {config}: the number of classes is unknown (no class names from its data, no "
                         "checkpoint): give the data's annotation files or a label_map")
    if saved is not None and saved != count:
        raise ValueError(f"checkpoint {checkpoint} was trained for {saved} classes, but config {config} names "
                         f"{count}")
    return count


def published_classifier(weights: Any, num_classes: Any) -> bool:
    """Whether ``weights`` is a published trained classifier for ``num_classes`` classes: a
    DeepMind-port I3D file whose logits have that many outputs."""
    if not isinstance(weights, str) or not Path(weights).is_file():
        return False
    try:
        state = torch.load(weights, map_location="cpu", weights_only=True)
    except Exception:  # noqa: BLE001 - not a state dict: not a published classifier
        return False
    bias = state.get("logits.conv3d.bias") if isinstance(state, dict) and is_port_state_dict(state) else None
    return bias is not None and bias.shape[0] == num_classes


def networks_by_weights(model: dict) -> dict[str, object]:
    """The ``weights`` of each network of ``model`` (a config without a checkpoint) that no
    stream checkpoint (``spatial_checkpoint``) loads, by its init argument's name."""
    init_args = model["init_args"]
    return {key: (network.get("init_args") or {}).get("weights") for key, network in init_args.items()
            if isinstance(network, dict) and "class_path" in network and not init_args.get(f"{key}_checkpoint")}


def refuse_untrained(model: dict, config: Path) -> None:
    """ValueError unless every network of ``model`` (a config without a checkpoint) classifies
    with a trained classifier: loaded by the module (``spatial_checkpoint``) or a published
    trained classifier (``published_classifier``). Decided from the config, before anything
    is built: ImageNet ``weights`` are where training starts, and are not even downloaded."""
    classes = model["init_args"].get("num_classes")
    untrained = [key for key, weights in networks_by_weights(model).items()
                 if not published_classifier(weights, classes)]
    if untrained:
        raise ValueError(f"config {config}: {' and '.join(f'model.init_args.{key}' for key in untrained)} "
                         "would classify with a classifier nobody trained (its weights are where training starts): "
                         "give a checkpoint (--checkpoint CKPT) or published classifier weights (an I3D port file "
                         "with as many classes)")


def refuse_random(model: dict, config: Path) -> None:
    """ValueError when a network of ``model`` (a config without a checkpoint) has no weights at
    all: its features would be those of random weights."""
    random = [key for key, weights in networks_by_weights(model).items() if not weights]
    if random:
        raise ValueError(f"config {config}: {' and '.join(f'model.init_args.{key}' for key in random)} "
                         "has no weights (its features would be random): set its weights (ImageNet, an I3D port "
                         "file) or give a checkpoint (--checkpoint CKPT)")


def config_recipe(model: dict, classes: list[str] | None, data: dict, found: ConfigData, module: LightningModule,
                  stored: Recipe | None, config: Path) -> Recipe:
    """The recipe of a config: its data blocks (the DataModule's own when it could be built, which
    also reads the training flow's settings), else the checkpoint's flow settings."""
    datamodule, problem = found.datamodule, found.problem
    if datamodule is not None and hasattr(datamodule, "set_input_specs"):
        try:
            datamodule.set_input_specs(module.input_specs)
            recipe = Recipe.from_dict({"version": RECIPE_VERSION, "model": model, **data_recipe(datamodule)})
            if recipe.flow is not None and not recipe.flow.known and stored is not None and stored.flow is not None:
                recipe = replace(recipe, flow=stored.flow)
            return replace(recipe, classes=classes)
        except (OSError, ValueError) as error:  # a root the input reads is missing: settings from the blocks
            problem = _first_line(error)
    init_args = data.get("init_args", {}) if isinstance(data, dict) else {}
    annotations = (init_args.get("annotations") or {}).get("class_path")
    mirrorable = getattr(_import(annotations), "mirrorable", True) if annotations else True
    augment = dict(init_args.get("augment") or {})
    augment = Augmentation(**{**augment, "scales": tuple(augment.get("scales", Augmentation.scales))})
    if augment.flip is None:
        augment = replace(augment, flip=mirrorable)
    test = EvalProtocol(**(init_args.get("test") or {}))
    specs = {key: spec for key, spec in module.input_specs.items() if spec is not None}
    test = replace(test, crops=protocol_crops(test, infer_modality(specs), bool(augment.flip)))
    reads_flow = "flow" in specs
    flow = stored.flow if stored is not None else None
    if reads_flow and flow is None:
        frames_root = (init_args.get("roots") or {}).get("frames_root")
        flow = FlowSettings(None, reason=f"config {config}: its training flow (roots.frames_root: {frames_root}) is "
                                         f"not here to read its extraction settings from ({problem}), and no "
                                         "checkpoint recipe says them")
    return Recipe(model=model, classes=classes, augment=augment,
                  sampling=FrameSampling(**(init_args.get("sampling") or {})), test=test,
                  decoder=(init_args.get("loader") or {}).get("decoder", LoaderSettings.decoder),
                  flow_layout=(init_args.get("roots") or {}).get("flow_layout", Roots.flow_layout),
                  flow=flow if reads_flow else None)


def refuse_other_data(recipe: Recipe, stored: Recipe, config: Path, checkpoint: str | Path | None) -> None:
    """ValueError when the config would show the network videos otherwise than the checkpoint's
    recipe says its data did (a run with ``--data.augment.short_side`` on the command line, or
    another config): its short side, flow mean subtraction, sampling or RGB decoder."""
    pairs = {"augment.short_side": (stored.augment.short_side, recipe.augment.short_side),
             "augment.flow_mean_subtraction": (stored.augment.flow_mean_subtraction,
                                               recipe.augment.flow_mean_subtraction),
             "sampling": (stored.sampling, recipe.sampling), "loader.decoder": (stored.decoder, recipe.decoder)}
    differ = [f"{name}: checkpoint {a!r}, config {b!r}" for name, (a, b) in pairs.items() if a != b]
    if differ:
        raise ValueError(f"config {config} reads videos otherwise than checkpoint {checkpoint}'s data did "
                         f"({'; '.join(differ)}): give the checkpoint alone (its recipe has its settings) or fix the "
                         "config")


def warn_no_names(source: str) -> None:
    warnings.warn(f"{source} names no classes: scores are by class index", NoClassNamesWarning, stacklevel=3)


def _import(class_path: str) -> type | None:
    module, _, name = class_path.rpartition(".")
    try:
        return getattr(importlib.import_module(module), name)
    except Exception:  # noqa: BLE001 - an unknown class: the default applies
        return None


def _first_line(error: BaseException) -> str:
    """The first line of the innermost cause (jsonargparse wraps a module's own error)."""
    while error.__cause__ is not None:
        error = error.__cause__
    text = str(error).strip()
    return text.splitlines()[0] if text else type(error).__name__
