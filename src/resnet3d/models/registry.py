"""The model registry: a plain dict from family name to how to build it.

``create_model("resnet", 50, n_classes=700)`` (or ``create_model("resnet-50", ...)``) checks the
depth and every keyword against the family's list and raises a ``UserError`` naming the valid
choices, so a typo fails at once with a fix instead of deep inside a constructor.
"""
from __future__ import annotations

import operator
from dataclasses import dataclass, field
from typing import Any, Callable, Dict, List, Mapping, Optional, Tuple

from resnet3d.errors import UserError
from resnet3d.models.base import VideoClassifier

COMMON_OPTIONS: Dict[str, Any] = {"n_classes": 400}


@dataclass(frozen=True)
class ModelFamily:
    """One family: its depths, its keyword options with defaults, and its builder.

    ``build(depth, **options)`` receives every option, defaults filled in. A family without
    depths (C3D) is built with ``depth=None``.
    """

    name: str
    depths: Tuple[int, ...]
    build: Callable[..., VideoClassifier]
    options: Mapping[str, Any]
    summary: str
    choices: Mapping[str, Tuple[Any, ...]] = field(default_factory=dict)

    def arch(self, depth: Optional[int]) -> str:
        return self.name if depth is None else f"{self.name}-{depth}"

    def all_options(self) -> Dict[str, Any]:
        return {**COMMON_OPTIONS, **self.options}


MODELS: Dict[str, ModelFamily] = {}


def register_family(family: ModelFamily) -> ModelFamily:
    if family.name in MODELS:
        raise ValueError(f"model family {family.name!r} is registered twice")
    MODELS[family.name] = family
    return family


def list_models(family: Optional[str] = None) -> List[str]:
    """Every buildable architecture, e.g. ``['resnet-10', ..., 'c3d']`` (optionally one family's)."""
    families = [_family(family)] if family is not None else list(MODELS.values())
    names: List[str] = []
    for fam in families:
        if fam.depths:
            names.extend(fam.arch(depth) for depth in fam.depths)
        else:
            names.append(fam.name)
    return names


def model_options(model: str) -> Dict[str, Any]:
    """The keyword options ``create_model`` accepts for a family, with their defaults."""
    family = model.rpartition("-")[0] if model not in MODELS and "-" in model else model  # "resnet-18" or "resnet"
    return _family(family).all_options()


def _family(name: str) -> ModelFamily:
    try:
        return MODELS[name]
    except KeyError:
        raise UserError(f"unknown model {name!r}; choose one of: {', '.join(MODELS)}") from None


def parse_arch(model: str, model_depth: Optional[int] = None) -> Tuple[ModelFamily, Optional[int]]:
    """Resolve ``("resnet", 50)`` or ``("resnet-50", None)`` to a family and a checked depth."""
    if model not in MODELS and "-" in model and model_depth is None:
        name, _, depth_text = model.rpartition("-")
        if name in MODELS and depth_text.isdigit():
            model, model_depth = name, int(depth_text)
    family = _family(model)
    if not family.depths:
        if model_depth is not None:
            raise UserError(f"model {family.name!r} has no depth option; pass model_depth=None")
        return family, None
    if model_depth is None:
        if len(family.depths) == 1:
            return family, family.depths[0]
        raise UserError(f"model {family.name!r} needs model_depth, one of: {_join(family.depths)}")
    try:
        depth = operator.index(model_depth)
    except TypeError:
        raise UserError(f"model_depth must be an integer, got {model_depth!r}") from None
    if depth not in family.depths:
        raise UserError(f"{family.name} has no depth {depth}; choose one of: {_join(family.depths)}")
    return family, depth


def _join(values) -> str:
    return ", ".join(str(v) for v in values)


def _check_option(family: ModelFamily, name: str, value: Any, default: Any) -> Any:
    """Validate one option against its family's choices or its default's type.

    A default of None marks an optional positive integer (``stem_width``).
    """
    where = f"{family.name} option {name}"
    if name in family.choices:
        allowed = family.choices[name]
        if isinstance(value, str) and value.upper() in allowed:
            return value.upper()
        raise UserError(f"{where} must be one of {_join(allowed)}, got {value!r}")
    if isinstance(default, bool):
        if not isinstance(value, bool):
            raise UserError(f"{where} must be True or False, got {value!r}")
        return value
    if isinstance(default, int) or default is None:
        if value is None:  # only an optional option's default can be None here
            return None
        if isinstance(value, bool) or not _is_int(value) or int(value) < 1:
            raise UserError(f"{where} must be a positive integer, got {value!r}")
        return int(value)
    if isinstance(default, float):
        if isinstance(value, bool) or not isinstance(value, (int, float)) or value < 0:
            raise UserError(f"{where} must be a non-negative number, got {value!r}")
        return float(value)
    return value


def _is_int(value: Any) -> bool:
    try:
        operator.index(value)
    except TypeError:
        return isinstance(value, float) and value.is_integer()
    return True


def create_model(model: str, model_depth: Optional[int] = None, **kwargs: Any) -> VideoClassifier:
    """Build a model of the zoo with the successor's keyword names.

    ``create_model("resnet", 50, n_classes=700, shortcut_type="B")``; ``create_model("resnet-50")``
    also works. An option passed as None takes its default, so callers can forward unset flags.
    The result's ``model_config`` holds every argument, so ``create_model(**model.model_config)``
    rebuilds the same architecture.
    """
    family, depth = parse_arch(model, model_depth)
    defaults = family.all_options()
    kwargs = {name: (defaults.get(name) if value is None else value) for name, value in kwargs.items()}
    unknown = sorted(set(kwargs) - set(defaults))
    if unknown:
        raise UserError(
            f"{family.name} does not take {', '.join(unknown)}; its options are: {', '.join(defaults)}"
        )
    options = {name: _check_option(family, name, kwargs.get(name, default), default) for name, default in defaults.items()}
    net = family.build(depth, **options)
    config: Dict[str, Any] = {"model": family.name, "model_depth": depth}
    config.update((name, value) for name, value in options.items() if not (value is None and defaults[name] is None))
    net._model_config = config
    return net
