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
import math
import typing
from dataclasses import dataclass, field
from typing import Any, Dict, Mapping, Optional, Tuple

from resnet3d.data.config import DataConfig
from resnet3d.errors import UserError
from resnet3d.hardware import default_num_workers  # noqa: F401  (re-exported: the CLI's worker default)
from resnet3d.normalization import InputNorm

# ``--compile-mode``: "none" trains the model as it is; the others are torch.compile's own modes
# (reduce-overhead adds CUDA graphs, max-autotune tunes kernels and adds CUDA graphs).
# resnet3d.engine.compilation applies them.
COMPILE_MODES = ("none", "default", "reduce-overhead", "max-autotune", "max-autotune-no-cudagraphs")
# The values the trainer and recognition act on; anything else used to be taken silently (a
# device "tpu" ran on the CPU) or refused only after training (an inference crop "corner").
# ``from_plain`` checks them (field metadata ``choices``); the flags offer the same lists.
DEVICES = ("auto", "cuda", "cpu")
DIST_BACKENDS = ("auto", "nccl", "gloo")
PRECISIONS = ("auto", "bf16", "fp16", "fp32")
INFERENCE_FLAVOURS = ("successor", "seed")  # resnet3d.engine.results.FLAVOURS
INFERENCE_CROPS = ("center", "nocrop")  # what [inference] crop takes (three crops are n_crops = 3)
INFERENCE_N_CROPS = (1, 3)
LR_SCHEDULERS = ("multistep", "plateau", "cosine", "regimes", "constant")  # resnet3d.engine.schedules
OPTIMIZERS = ("sgd",)
SHORTCUT_TYPES = ("A", "B", "C")  # the ResNet families' downsampling shortcuts (resnet3d.models.backbone)


def _model_names() -> Tuple[str, ...]:
    """The model families (read when a config file is checked: the registry imports torch)."""
    from resnet3d.models import MODELS

    return tuple(MODELS)


def choices(allowed: Any, hint: str = "") -> Dict[str, Any]:
    """Field metadata: a config file (or opts.json) value outside ``allowed`` (a tuple, or a
    function giving one) is refused, with ``hint`` after the list."""
    return {"choices": allowed, "hint": hint}


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
    model: str = field(default="resnet", metadata=choices(_model_names))
    model_depth: Optional[int] = 18  # families without depths (C3D) ignore it
    n_classes: int = 400
    n_input_channels: int = 3
    conv1_t_size: int = 7
    conv1_t_stride: int = 1
    no_max_pool: bool = False
    shortcut_type: str = field(default="B", metadata=choices(SHORTCUT_TYPES))
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
    # 2018 successor: train block k (layer<k> / denseblock<k>) on, 5 = the head; read against the
    # model as built, which pretrained weights may have made a DenseNet whatever --model said
    ft_begin_index: int = 0
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
    optimizer: str = field(default="sgd", metadata=choices(OPTIMIZERS))
    learning_rate: float = 0.1
    momentum: float = 0.9
    dampening: float = 0.0
    weight_decay: float = 1e-3
    nesterov: bool = False
    lr_scheduler: str = field(default="multistep", metadata=choices(LR_SCHEDULERS))
    multistep_milestones: Tuple[int, ...] = (50, 100, 150)
    multistep_gamma: float = 0.1
    overwrite_milestones: bool = False
    plateau_patience: int = 10
    plateau_factor: float = 0.1
    warmup_epochs: float = 0.0
    min_lr: float = 0.0
    regimes: Tuple[Regime, ...] = ()
    regimes_path: Optional[str] = None  # where the regimes came from (lr.lua), for the record
    # the settings above given explicitly (flags, a config file, an lr.lua): a continued run takes
    # the others from its checkpoint, as it was trained (engine.carried_settings)
    explicit_optim: Tuple[str, ...] = ()


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
    # auto (bf16 on Ampere or later GPUs, else fp32) | bf16 | fp16 | fp32
    precision: str = field(default="auto", metadata=choices(PRECISIONS))
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
    # auto: CUDA when it is available, else the CPU. The GPU is chosen by gpu_id (and the
    # processes), so torch's "cuda:1" is refused with that hint rather than run on GPU 0.
    device: str = field(default="auto", metadata=choices(
        DEVICES, 'for a particular GPU write device = "cuda" and gpu_id = N (0-based)'))
    n_gpus: Optional[int] = None  # None: every visible GPU
    gpu_id: int = 0  # first GPU to use (0-based; the seed's --gpu_id is 1-based)
    nproc_per_node: Optional[int] = None  # processes on this machine; None: n_gpus on CUDA, 1 on CPU
    batchnorm_sync: bool = False
    dist_backend: str = field(default="auto", metadata=choices(DIST_BACKENDS))  # auto: nccl on CUDA, gloo on CPU
    # Several machines started by mpirun or srun, one process each (the successor's --distributed
    # --world_size N --dist_url): every machine runs its processes_per_node and meets the others at
    # dist_url (tcp://HOST:PORT of the launcher's rank 0, or env://). torchrun needs neither.
    nodes: int = 1
    dist_url: str = ""


@dataclass(frozen=True)
class InferenceConfig:
    """Per-video recognition (issue 5). ``flavour`` says whose output format and defaults apply:

    - ``seed`` (``--test_video --test_subset val``): windows every ``stride`` (= sample_duration)
      frames, centre crop, top ``top_k`` = 10 labels to ``<result_path>/<subset>_video.json``.
    - ``successor`` (``--inference --inference_subset val``): windows every ``stride`` (16),
      ``crop`` center|nocrop, softmax average unless ``average`` is False, top ``top_k`` (5) to
      ``<result_path>/<subset>.json``.
    """

    flavour: str = field(default="successor", metadata=choices(INFERENCE_FLAVOURS))
    subset: str = "val"
    stride: int = 16
    crop: str = field(default="center", metadata=choices(INFERENCE_CROPS, "three crops per frame is n_crops = 3"))
    average: bool = True
    top_k: int = 5
    batch_size: int = 0  # 0: the training batch size
    # multi-view testing: n_clips > 0 takes that many evenly spaced windows per video instead of
    # sliding ones; n_crops 3 takes three squares along each frame's long side
    n_clips: int = 0
    n_crops: int = field(default=1, metadata=choices(INFERENCE_N_CROPS))
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
_KINDS = {int: "integers", float: "numbers", bool: "true/false values", str: "strings"}


def _convert(hint: Any, value: Any, source: str, label: str) -> Any:
    """``value`` as type ``hint``; ``source`` and ``label`` ("[data] sample_size") name it in errors."""
    where = f"{source}: {label}"
    origin = typing.get_origin(hint)
    args = typing.get_args(hint)
    if origin is typing.Union:  # Optional[X]
        inner = [a for a in args if a is not type(None)]
        return _convert(inner[0], value, source, label) if len(inner) == 1 and value is not None else value
    if value is None:  # JSON's null where the setting has no "none" (it failed later, far from the file)
        raise UserError(f"{where}: expected {_kind(hint)}, got null; leave the key out for the default")
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
        items = list(value) if isinstance(value, (list, tuple)) else [value]  # a lone value: a list of one
        if args and args[-1] is not Ellipsis:  # a fixed length, e.g. input_norm.mean's 3 channels
            if len(items) != len(args):
                raise UserError(f"{where}: expected {_kind(hint)}, got {value!r}")
            return tuple(_convert(a, v, source, f"{label}[{i}]") for i, (a, v) in enumerate(zip(args, items)))
        item = args[0] if args else Any
        return tuple(_convert(item, v, source, f"{label}[{i}]") for i, v in enumerate(items))
    if hint is float and isinstance(value, (int, float)) and not isinstance(value, bool):
        return float(value)
    if hint is int and isinstance(value, float) and value.is_integer():
        return int(value)
    if hint in _KIND and (not isinstance(value, hint) or (hint is not bool and isinstance(value, bool))):
        raise UserError(f"{where}: expected {_KIND[hint]}, got {value!r}")
    return value


def _kind(hint: Any) -> str:
    """What a message says a setting of type ``hint`` holds: "an integer", "a list of 3 numbers"."""
    origin, args = typing.get_origin(hint), typing.get_args(hint)
    if origin in (tuple, Tuple) and args and args[-1] is not Ellipsis:
        return f"a list of {len(args)} {_KINDS.get(args[0], 'values')}"
    if origin in (tuple, Tuple):
        return f"a list of {_KINDS.get(args[0], 'values') if args else 'values'}"
    if dataclasses.is_dataclass(hint):
        return "a table of settings"
    return _KIND.get(hint, "a value")


def _member(table: str, name: str) -> str:
    """How messages name setting ``name`` of ``table``: a section at the top is "[data]", a key in
    a section "[data] sample_size", and a key of a table inside a section is spelt as TOML's
    dotted keys spell it: "[data] input_norm.mean", "[optim] regimes[0].lr"."""
    if not table:
        return f"[{name}]"
    return f"{table}.{name}" if " " in table else f"{table} {name}"


def _require(cls: Any, data: Mapping[str, Any], source: str, table: str) -> None:
    """Settings without a default must be given: ``[data] input_norm`` needs mean and std (a
    partial table is not merged into the default statistics; --mean and --std go together too)."""
    needed = [f.name for f in dataclasses.fields(cls)
              if f.default is dataclasses.MISSING and f.default_factory is dataclasses.MISSING]
    missing = [name for name in needed if name not in data]
    if missing:
        optional = [f.name for f in dataclasses.fields(cls) if f.name not in needed]
        also = f"; optional: {', '.join(optional)}" if optional else ""
        where = f"{source}: {table}" if table else source
        raise UserError(f"{where}: missing {', '.join(missing)} (give {', '.join(needed)}{also})")


def _check_choices(cls: Any, values: Mapping[str, Any], source: str, table: str) -> None:
    """Settings whose field metadata lists ``choices`` hold one of them (see ``choices``)."""
    for item in dataclasses.fields(cls):
        allowed = item.metadata.get("choices")
        if callable(allowed):
            allowed = allowed()
        if allowed is None or item.name not in values or values[item.name] in allowed:
            continue
        hint = f" ({item.metadata['hint']})" if item.metadata.get("hint") else ""
        raise UserError(f"{source}: {_member(table, item.name)}: expected one of {', '.join(map(str, allowed))}, "
                        f"got {values[item.name]!r}{hint}")


def _check_input_norm(norm: InputNorm, source: str, table: str) -> None:
    """What the types cannot say: each channel is divided by its std and scaled by value_scale, so
    0 gave inf (a nan loss from the first step) and a negative turned the channel over, silently;
    nan or inf anywhere spoils every clip."""
    where = lambda name: f"{source}: {_member(table, name)}"  # noqa: E731
    for name, values in (("mean", norm.mean), ("std", norm.std), ("value_scale", (norm.value_scale,))):
        if not all(math.isfinite(v) for v in values):
            raise UserError(f"{where(name)}: expected finite numbers, got {_shown(values)}")
    if not all(s > 0 for s in norm.std):
        raise UserError(f"{where('std')}: expected 3 numbers above 0 (each channel is divided by its std), "
                        f"got {_shown(norm.std)}")
    if norm.value_scale <= 0:
        raise UserError(f"{where('value_scale')}: expected a number above 0 (1 for mean and std in 0-1 units, "
                        f"255 for 0-255), got {_shown(norm.value_scale)}")


def _shown(values: Any) -> str:
    """Numbers as the file wrote them: 1 for 1.0, a list for a tuple."""
    if isinstance(values, (list, tuple)):
        return "[" + ", ".join(_shown(v) for v in values) + "]"
    return f"{values:g}" if isinstance(values, float) else repr(values)



def from_plain(cls: Any, data: Mapping[str, Any], source: str = "config", table: str = "",
               aliases: Optional[Mapping[str, str]] = None) -> Any:
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
        # the record the program keeps of what was given explicitly is no setting to suggest
        public = [name for name in known if not name.startswith("explicit_")]
        close = [(aliases or {}).get(unknown[0])] if (aliases or {}).get(unknown[0]) in public else \
            difflib.get_close_matches(unknown[0], public, n=1)
        hint = f" (did you mean {close[0]}?)" if close else ""
        what = "section(s)" if cls is Config else "setting(s)"
        place = f" in {table}" if table else ""
        raise UserError(f"{source}: unknown {what} {', '.join(unknown)}{place}{hint}; "
                        f"known: {', '.join(sorted(public))}")
    _require(cls, data, source, table)
    hints = typing.get_type_hints(cls)
    # Every value, nested tables too ([data] input_norm), is checked here, where the file and the
    # key are known; the classes' own checks then see the right types only.
    kwargs = {name: _convert(hints[name], value, source, _member(table, name)) for name, value in data.items()}
    _check_choices(cls, kwargs, source, table)
    if hasattr(cls, "from_dict") and cls is not Config and getattr(cls, "__module__", "") != __name__:
        built = cls.from_dict(kwargs)  # a class owned by another package (DataConfig, InputNorm)
    else:
        built = cls(**kwargs)
    if cls is InputNorm:  # (the one setting whose values need more than their types checked)
        _check_input_norm(built, source, table)
    return built


def merge(base: Config, overrides: Mapping[str, Mapping[str, Any]], source: str,
          aliases: Optional[Mapping[str, Mapping[str, str]]] = None) -> Config:
    """A new Config with ``{section: {key: value}}`` applied on top of ``base``. ``aliases``
    (``{section: {flag name: key}}``) names the key a misspelt one most likely meant
    (``milestones`` is ``multistep_milestones``, as the flag ``--milestones`` sets it)."""
    changed: Dict[str, Any] = {}
    for section, values in overrides.items():
        if section == USED_KEY:
            continue  # an opts.json given as a config file: its record of what a run used is no setting
        if section not in SECTIONS:
            close = difflib.get_close_matches(section, SECTIONS, n=1)
            hint = f" (did you mean [{close[0]}]?)" if close else ""
            raise UserError(f"{source}: unknown section [{section}]{hint}; known: {', '.join(SECTIONS)}")
        current = getattr(base, section)
        if not values and current is not None:
            # An empty table changes no setting; only a section that is off ([inference] when no
            # recognition is set up) is turned on by its header alone, with its defaults.
            continue
        if current is None:
            hint = typing.get_type_hints(Config)[section]
            current_dict: Dict[str, Any] = {}
            section_cls = [a for a in typing.get_args(hint) if a is not type(None)][0]
        else:
            current_dict = to_plain(current)
            section_cls = type(current)
        current_dict.update(values)
        changed[section] = from_plain(section_cls, current_dict, source, f"[{section}]",
                                      aliases=(aliases or {}).get(section))
    return dataclasses.replace(base, **changed)
