"""The frozen configuration of a run: what to read, which model, how to optimise, where to write.

The CLI builds one ``Config`` and never changes it; derived values make new objects through
``dataclasses.replace``. Both spellings of the command line produce it: ``resnet3d.compat``
translates the originals' flags (``resnet3d main``) and ``resnet3d.commands.train`` the modern
flags and config files. The resolved config is written to ``<result_path>/opts.json`` and into
every checkpoint, and ``Config.from_dict`` reads either back.

Sections:
- ``data``      ``resnet3d.data.config.DataConfig`` (owned by the data package: paths, data set,
                 sampling, augmentation, input normalisation, loader workers).
- ``model``     ``ModelConfig``: the ``create_model`` arguments.
- ``finetune``  ``FinetuneConfig``: pretrained weights and which parameters train.
- ``optim``     ``OptimConfig``: SGD and the learning-rate schedule.
- ``run``       ``RunConfig``: epochs, batch, checkpoints, resume, precision, logging.
- ``hardware``  ``HardwareConfig``: device, processes, distributed settings.
- ``inference`` ``InferenceConfig`` or None: per-video recognition after training (issue 5,
                 ``resnet3d.engine.predict.run_recognition``), the seed's ``--test_video`` or
                 the successor's ``--inference``.
"""
from __future__ import annotations

import dataclasses
import difflib
import typing
from dataclasses import dataclass, field
from typing import Any, Dict, Mapping, Optional, Tuple

from resnet3d.data.config import DataConfig
from resnet3d.errors import UserError
from resnet3d.hardware import default_num_workers  # noqa: F401  (re-exported: the CLI's worker default)

# ``--compile-mode``: "none" trains the model as it is; the others are torch.compile's own modes
# (reduce-overhead adds CUDA graphs, max-autotune tunes kernels and adds CUDA graphs).
# resnet3d.engine.compilation applies them.
COMPILE_MODES = ("none", "default", "reduce-overhead", "max-autotune", "max-autotune-no-cudagraphs")


def check_compile_mode(mode: Any, where: str = "--compile-mode") -> str:
    if mode not in COMPILE_MODES:
        raise UserError(f"{where} {mode!r}: choose one of {', '.join(COMPILE_MODES)}")
    return mode


def resolve_compile_mode(compile: Optional[bool], compile_mode: Optional[str]) -> Optional[str]:
    """The compile mode that ``--compile`` / ``--no-compile`` and ``--compile-mode`` ask for
    together (None: neither was given). ``--compile`` means mode ``default`` unless
    ``--compile-mode`` names another; flags that contradict each other are an error."""
    if compile_mode is not None:
        check_compile_mode(compile_mode)
    if compile is None:
        return compile_mode
    if compile_mode is None:
        return "default" if compile else "none"
    if compile != (compile_mode != "none"):
        given = "--compile" if compile else "--no-compile"
        raise UserError(f"{given} and --compile-mode {compile_mode} contradict each other; give one")
    return compile_mode


@dataclass(frozen=True)
class Regime:
    """One row of the seed's ``lr.lua``: epochs first..last (inclusive) train at lr and wd."""

    first_epoch: int
    last_epoch: int
    lr: float
    weight_decay: float


@dataclass(frozen=True)
class ModelConfig:
    model: str = "resnet"
    model_depth: Optional[int] = 18  # families without depths (C3D) ignore it
    n_classes: int = 400
    n_input_channels: int = 3
    conv1_t_size: int = 7
    conv1_t_stride: int = 1
    no_max_pool: bool = False
    shortcut_type: str = "B"
    widen_factor: float = 1.0
    k: int = 2
    cardinality: int = 32
    # C3D (the seed's second family)
    batch_norm: bool = False
    global_pooling: bool = False
    dropout_ratio: float = 0.5

    @property
    def depth(self) -> Optional[int]:
        """The depth create_model takes: None for a family without depths (C3D)."""
        from resnet3d.models import MODELS

        family = MODELS.get(self.model)
        return None if family is not None and not family.depths else self.model_depth

    @property
    def arch(self) -> str:
        """The successor's arch string, e.g. 'resnet-18' ('c3d' for C3D)."""
        return self.model if self.model == "c3d" or self.model_depth is None else f"{self.model}-{self.model_depth}"

    def create_kwargs(self, sample_size: int, sample_duration: int) -> Dict[str, Any]:
        """Keyword arguments for ``resnet3d.create_model(model, model_depth, **kwargs)``: the
        settings this family takes (the registry says which), as the successor's generate_model
        passes only the relevant ones."""
        from resnet3d.models import model_options

        values = dataclasses.asdict(self)
        values.update(sample_size=sample_size, sample_duration=sample_duration)
        return {name: values[name] for name in model_options(self.model) if name in values}

    @classmethod
    def from_model_config(cls, model_config: Mapping[str, Any]) -> "ModelConfig":
        """The settings of a built model (``model.model_config``), for the record in opts.json."""
        known = {f.name for f in dataclasses.fields(cls)}
        values = {k: v for k, v in model_config.items() if k in known and v is not None}
        if model_config.get("model_depth", 0) is None:
            values["model_depth"] = None
        return cls(**values)


@dataclass(frozen=True)
class FinetuneConfig:
    pretrained: Optional[str] = None  # --pretrain_path / --premodel_path
    n_pretrain_classes: int = 0  # 0: read the class count from the checkpoint
    ft_begin_module: str = ""  # successor: train this top-level module and everything after it
    freeze_params: int = 0  # seed: train only the last N parameterised layers (0: all)
    freeze_bn: bool = False  # BatchNorm uses and keeps its running statistics
    bgr_premodel: bool = False  # seed: swap the first conv's input channels 1 and 3
    # Feed the model as the loaded checkpoint says (e.g. a seed .t7 wants 0-255 minus the mean)
    # unless normalisation flags were given.
    input_norm_from_checkpoint: bool = True
    # A run that only evaluates a checkpoint (no training) takes the clip size it records unless
    # the flag (or the config file) set it: a model trained on 16x112x112 clips is tested on them.
    sample_size_from_checkpoint: bool = True
    sample_duration_from_checkpoint: bool = True
    # The [model] settings given on the command line or in the config file: pretrained weights
    # must agree with them (fine-tuning builds the weights' architecture; a different one asked
    # for is an error, not silently dropped).
    explicit_model: Tuple[str, ...] = ()


@dataclass(frozen=True)
class OptimConfig:
    optimizer: str = "sgd"
    learning_rate: float = 0.1
    momentum: float = 0.9
    dampening: float = 0.0
    weight_decay: float = 1e-3
    nesterov: bool = False
    lr_scheduler: str = "multistep"  # multistep | plateau | cosine | regimes | constant
    multistep_milestones: Tuple[int, ...] = (50, 100, 150)
    multistep_gamma: float = 0.1
    overwrite_milestones: bool = False
    plateau_patience: int = 10
    plateau_factor: float = 0.1
    warmup_epochs: float = 0.0
    min_lr: float = 0.0
    regimes: Tuple[Regime, ...] = ()
    regimes_path: Optional[str] = None  # where the regimes came from (lr.lua), for the record


@dataclass(frozen=True)
class RunConfig:
    result_path: str = "results"
    n_epochs: int = 200
    begin_epoch: int = 1  # > 1: continue from <result_path>/model_<begin_epoch - 1>.pth (seed)
    batch_size: int = 128  # global: shared among all processes
    train: bool = True
    val: bool = True
    val_every: int = 1
    checkpoint_every: int = 10
    resume: Optional[str] = None  # a checkpoint path, or "auto": the latest in result_path
    manual_seed: int = 1
    deterministic: bool = False
    overwrite: bool = False  # allow a fresh run to replace an earlier run's logs and checkpoints
    precision: str = "auto"  # auto (bf16 on Ampere or later GPUs, else fp32) | bf16 | fp16 | fp32
    channels_last: bool = True  # channels_last_3d memory format on CUDA (slower on the CPU, so not used there)
    compile_mode: str = "none"  # one of COMPILE_MODES
    tensorboard: bool = False
    batch_log: bool = True  # train_batch.log
    curves: bool = True  # curves.png
    max_steps_per_epoch: int = 0  # 0: the whole epoch (for smoke runs and benchmarks)
    stop_on_nonfinite: bool = True

    @staticmethod
    def upgrade(values: Mapping[str, Any], where: str) -> Dict[str, Any]:
        """Settings as earlier versions wrote them (opts.json, checkpoints, config files) under
        today's names: ``compile`` (true/false) became ``compile_mode``. ``compile = true`` keeps
        a ``compile_mode`` other than "none" beside it and means "default" otherwise."""
        values = dict(values)
        if "compile" in values:
            compile = values.pop("compile")
            if not isinstance(compile, bool):
                raise UserError(f"{where} compile: expected true or false, got {compile!r}")
            mode = values.get("compile_mode", "none")
            values["compile_mode"] = (mode if mode != "none" else "default") if compile else "none"
        if "compile_mode" in values:
            check_compile_mode(values["compile_mode"], f"{where} compile_mode")
        return values


@dataclass(frozen=True)
class HardwareConfig:
    device: str = "auto"  # auto | cuda | cpu
    n_gpus: Optional[int] = None  # None: every visible GPU
    gpu_id: int = 0  # first GPU to use (0-based; the seed's --gpu_id is 1-based)
    nproc_per_node: Optional[int] = None  # processes on this machine; None: n_gpus on CUDA, 1 on CPU
    batchnorm_sync: bool = False
    dist_backend: str = "auto"  # auto: nccl on CUDA, gloo on CPU


@dataclass(frozen=True)
class InferenceConfig:
    """Per-video recognition (issue 5). ``flavour`` says whose output format and defaults apply:

    - ``seed`` (``--test_video --test_subset val``): windows every ``stride`` (= sample_duration)
      frames, centre crop, top ``top_k`` = 10 labels to ``<result_path>/<subset>_video.json``.
    - ``successor`` (``--inference --inference_subset val``): windows every ``stride`` (16),
      ``crop`` center|nocrop, softmax average unless ``average`` is False, top ``top_k`` (5) to
      ``<result_path>/<subset>.json``.
    """

    flavour: str = "successor"
    subset: str = "val"
    stride: int = 16
    crop: str = "center"
    average: bool = True
    top_k: int = 5
    batch_size: int = 0  # 0: the training batch size
    # multi-view testing: n_clips > 0 takes that many evenly spaced windows per video instead of
    # sliding ones; n_crops 3 takes three squares along each frame's long side
    n_clips: int = 0
    n_crops: int = 1
    # run a copy of the model with every BatchNorm folded into the conv before it (scores change
    # by float rounding only; resnet3d.models.fold); False runs the model as it is
    fold_bn: bool = True

    @property
    def output_name(self) -> str:
        return f"{self.subset}_video.json" if self.flavour == "seed" else f"{self.subset}.json"


@dataclass(frozen=True)
class Config:
    data: DataConfig
    model: ModelConfig = field(default_factory=ModelConfig)
    finetune: FinetuneConfig = field(default_factory=FinetuneConfig)
    optim: OptimConfig = field(default_factory=OptimConfig)
    run: RunConfig = field(default_factory=RunConfig)
    hardware: HardwareConfig = field(default_factory=HardwareConfig)
    inference: Optional[InferenceConfig] = None

    def to_dict(self) -> Dict[str, Any]:
        return to_plain(self)

    @classmethod
    def from_dict(cls, data: Mapping[str, Any], source: str = "config") -> "Config":
        """From ``to_dict()``'s form; an opts.json's record of what the run used is left out."""
        return from_plain(cls, {k: v for k, v in data.items() if k != USED_KEY}, source)


SECTIONS = {f.name: f for f in dataclasses.fields(Config)}
# opts.json's record of what a run used, beside the settings it asked for: the device after a
# fall-back to the CPU, the processes, the precision "auto" chose (written by the trainer).
USED_KEY = "used"


def to_plain(obj: Any) -> Any:
    """Dataclasses, tuples and paths -> JSON-ready dicts, lists, strings and numbers."""
    if dataclasses.is_dataclass(obj) and not isinstance(obj, type):
        if hasattr(obj, "to_dict") and type(obj).__module__ != __name__:
            return to_plain(obj.to_dict())  # a section owned by another package (DataConfig)
        return {f.name: to_plain(getattr(obj, f.name)) for f in dataclasses.fields(obj)}
    if isinstance(obj, (list, tuple)):
        return [to_plain(v) for v in obj]
    if isinstance(obj, dict):
        return {str(k): to_plain(v) for k, v in obj.items()}
    if hasattr(obj, "__fspath__"):
        return str(obj)
    return obj


_KIND = {int: "an integer", float: "a number", bool: "true or false", str: "a string"}


def _convert(hint: Any, value: Any, source: str, label: str) -> Any:
    """``value`` as type ``hint``; ``source`` and ``label`` ("[data] sample_size") name it in errors."""
    where = f"{source}: {label}"
    origin = typing.get_origin(hint)
    args = typing.get_args(hint)
    if value is None:
        return None
    if origin is typing.Union:  # Optional[X]
        inner = [a for a in args if a is not type(None)]
        return _convert(inner[0], value, source, label) if len(inner) == 1 else value
    if dataclasses.is_dataclass(hint):
        if isinstance(value, hint):
            return value
        if isinstance(value, (list, tuple)):  # a row, e.g. a regime [first, last, lr, wd]
            names = [f.name for f in dataclasses.fields(hint)]
            if len(value) != len(names):
                raise UserError(f"{where}: expected {len(names)} values ({', '.join(names)}), got {list(value)!r}")
            return from_plain(hint, dict(zip(names, value)), source, label)
        if not isinstance(value, Mapping):
            raise UserError(f"{where}: expected a table of settings, got {value!r}")
        return from_plain(hint, value, source, label)
    if origin in (tuple, Tuple):
        if isinstance(value, (str, bytes)) or not isinstance(value, (list, tuple)):
            value = [value]
        item = args[0] if args else Any
        return tuple(_convert(item, v, source, f"{label}[{i}]") for i, v in enumerate(value))
    if hint is float and isinstance(value, (int, float)) and not isinstance(value, bool):
        return float(value)
    if hint is int and isinstance(value, float) and value.is_integer():
        return int(value)
    if hint in _KIND and (not isinstance(value, hint) or (hint is not bool and isinstance(value, bool))):
        raise UserError(f"{where}: expected {_KIND[hint]}, got {value!r}")
    return value


def _member(table: str, name: str) -> str:
    """How messages name setting ``name`` of ``table``: a section at the top is "[data]"."""
    return f"{table} {name}" if table else f"[{name}]"


def from_plain(cls: Any, data: Mapping[str, Any], source: str = "config", table: str = "") -> Any:
    """Build dataclass ``cls`` from a dict (opts.json, a config file, a checkpoint).

    ``table`` is how messages name ``data`` in ``source``: "[data]" for a section, "" for the
    whole file. Unknown keys are an error that names the key, the section and the known keys, so
    a typo in a config file never silently does nothing; a value of the wrong type names the
    section and the key ("run.toml: [data] sample_size: expected an integer, got 'big'").
    """
    if hasattr(cls, "upgrade"):
        data = cls.upgrade(data, f"{source}: {table}" if table else source)
    known = {f.name: f for f in dataclasses.fields(cls)}
    unknown = sorted(set(data) - set(known))
    if unknown:
        close = difflib.get_close_matches(unknown[0], known, n=1)
        hint = f" (did you mean {close[0]}?)" if close else ""
        what = "section(s)" if cls is Config else "setting(s)"
        place = f" in {table}" if table else ""
        raise UserError(f"{source}: unknown {what} {', '.join(unknown)}{place}{hint}; "
                        f"known: {', '.join(sorted(known))}")
    hints = typing.get_type_hints(cls)
    if hasattr(cls, "from_dict") and cls is not Config and getattr(cls, "__module__", "") != __name__:
        # A section owned by another package (DataConfig) keeps its own rules for its nested
        # values; its plain settings are checked here, where the file and section are known.
        plain = {name: (value if dataclasses.is_dataclass(hints[name]) else
                        _convert(hints[name], value, source, _member(table, name)))
                 for name, value in data.items()}
        return cls.from_dict(plain)
    kwargs = {name: _convert(hints[name], value, source, _member(table, name)) for name, value in data.items()}
    return cls(**kwargs)


def merge(base: Config, overrides: Mapping[str, Mapping[str, Any]], source: str) -> Config:
    """A new Config with ``{section: {key: value}}`` applied on top of ``base``."""
    changed: Dict[str, Any] = {}
    for section, values in overrides.items():
        if section == USED_KEY:
            continue  # an opts.json given as a config file: its record of what a run used is no setting
        if section not in SECTIONS:
            raise UserError(f"{source}: unknown section [{section}]; known: {', '.join(SECTIONS)}")
        if not values:
            continue
        current = getattr(base, section)
        if current is None:
            hint = typing.get_type_hints(Config)[section]
            current_dict: Dict[str, Any] = {}
            section_cls = [a for a in typing.get_args(hint) if a is not type(None)][0]
        else:
            current_dict = to_plain(current)
            section_cls = type(current)
        current_dict.update(values)
        changed[section] = from_plain(section_cls, current_dict, source, f"[{section}]")
    return dataclasses.replace(base, **changed)
