"""The one checkpoint loader: every flavour users hold -> our names, our config, a working model.

Flavours (``LoadedCheckpoint.source_format``):

- ``resnet3d``: ours, ``{"format": "resnet3d", "model_config", "state_dict", ...}``;
- ``successor``: ``{"epoch", "arch", "state_dict", "optimizer", "scheduler"}`` (2018-era ones
  with ``module.`` keys and old DenseNet names included);
- ``state_dict``: a bare state_dict (any of the above names);
- ``torchvision``: a torchvision R3D state_dict (``stem.0``, ``layer1.0.conv1.0`` ...);
- ``torch7``: the seed's Lua Torch ``.t7`` models (ResNet, C3D), read by our own parser.

PyTorch files are read with ``torch.load(path, map_location="cpu", weights_only=True)`` only. A
file that needs arbitrary unpickling is refused: unpickling can run any code the file names.
"""
from __future__ import annotations

import os
import pickle
import re
import warnings
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any, Dict, List, Mapping, Optional, Tuple, Union

import torch
from torch import nn

from resnet3d.checkpoints.infer import infer_model_config
from resnet3d.checkpoints.mismatch import compare_state_dicts, mismatch_message
from resnet3d.checkpoints.renames import canonical_state_dict, saved_before_pytorch_041
from resnet3d.errors import UserError
from resnet3d.normalization import SEED, InputNorm

PathLike = Union[str, os.PathLike]
OUR_FORMAT = "resnet3d"
# Entries of our own checkpoints that LoadedCheckpoint exposes as attributes.
_OURS_TOP_LEVEL = {"format", "format_version", "epoch", "arch", "model_config", "state_dict", "optimizer",
                   "scheduler", "class_names", "input_norm"}
_STATE_DICT_KEYS = ("state_dict", "model_state_dict", "model")


@dataclass
class LoadedCheckpoint:
    """What a checkpoint holds, in our terms.

    ``input_norm`` is None when the file does not say how its inputs were normalised (the
    successor's 2020 files): the caller's flags decide (the successor's default is Kinetics
    mean/std). Files saved by PyTorch < 0.4.1 get the 2018 release's default (``SEED``).
    ``extra`` keeps every other top-level entry (scaler, config, rng_state, best_metric ...).
    """

    path: Optional[Path]
    source_format: str
    state_dict: Dict[str, torch.Tensor]
    model_config: Dict[str, Any]
    epoch: Optional[int] = None
    arch: Optional[str] = None
    class_names: Optional[List[str]] = None
    input_norm: Optional[InputNorm] = None
    optimizer: Optional[dict] = None
    scheduler: Optional[dict] = None
    extra: Dict[str, Any] = field(default_factory=dict)
    notes: List[str] = field(default_factory=list)

    @property
    def n_classes(self) -> Optional[int]:
        return self.model_config.get("n_classes")

    def describe_source(self) -> str:
        return str(self.path) if self.path is not None else "the checkpoint"


# -- reading files --------------------------------------------------------------------------


def _pickle_globals(path: Path, limit: int = 3) -> List[str]:
    """The classes and functions outside torch a plain pickle file names, read from its opcodes.

    ``pickletools.genops`` only decodes the stream; nothing is imported or called.
    """
    import pickletools

    names: List[str] = []
    strings: List[str] = []
    try:
        with open(path, "rb") as handle:
            for opcode, argument, _ in pickletools.genops(handle):
                if isinstance(argument, str) and "UNICODE" in opcode.name:
                    strings = (strings + [argument])[-2:]
                elif opcode.name == "GLOBAL":
                    names.append(str(argument).replace(" ", "."))
                elif opcode.name == "STACK_GLOBAL" and len(strings) == 2:
                    names.append(".".join(strings))
                names = [name for name in dict.fromkeys(names) if not name.startswith(("torch.", "collections."))]
                if len(names) >= limit:
                    break
    except Exception:  # a damaged stream: report what was found before it
        pass
    return names


def _truncated_pickle(path: Path) -> bool:
    """A plain pickle (not a torch.save zip) whose opcode stream breaks off before its STOP."""
    import pickletools

    with open(path, "rb") as handle:
        if handle.read(2) == b"PK":
            return False
        handle.seek(0)
        try:
            for opcode, _, _ in pickletools.genops(handle):
                if opcode.name == "STOP":
                    return False
        except Exception:  # noqa: BLE001 - any break in the stream is damage
            return True
    return True


def _unsafe_reason(error: Exception, path: Path) -> str:
    text = str(error)
    # torch's wordings: "Unsupported global: GLOBAL io.open was not ..." and "Trying to load
    # unsupported GLOBAL posix.system whose module posix is blocked"
    match = re.search(r"unsupported (?:global: )?GLOBAL ([\w.]+)", text, re.IGNORECASE)
    if match:
        return f"it stores a Python object of type {match.group(1)}"
    named = _pickle_globals(path)
    if named:
        return f"it is a plain pickle that calls {', '.join(named)}"
    return "it holds something other than tensors, numbers, strings, lists and dicts"


def _not_a_checkpoint(path: Path) -> Optional[str]:
    """Why ``path`` cannot be a torch.save file or a pickle at all, judged by its first bytes."""
    with open(path, "rb") as handle:
        head = handle.read(8)
    if not head:
        return "it is empty (0 bytes)"
    # torch.save writes a zip (PK); its legacy format and pickles of protocol 2+ begin with 0x80
    if head.startswith(b"PK") or head[:1] == b"\x80":
        return None
    return f"it is neither a torch.save file nor a pickle (it begins with the bytes {head[:4].hex(' ')})"


def torch_load_safely(path: Path) -> Any:
    """``torch.load(..., weights_only=True)``; refuse, with the reason, what needs more."""
    try:
        why = _not_a_checkpoint(path)
    except FileNotFoundError:
        raise UserError(f"{path}: no such file") from None
    except OSError as error:
        raise UserError(f"{path}: cannot read it ({error.strerror})") from None
    if why:
        raise UserError(f"{path}: not a PyTorch checkpoint: {why}; pass a .pth/.pt file written by torch.save "
                        "(or the seed's .t7)")
    try:
        with warnings.catch_warnings():
            # Plain pickles (not torch.save zips) make torch warn about their protocol; the
            # refusal below says everything the user needs.
            warnings.filterwarnings("ignore", message=".*pickle protocol.*")
            return torch.load(path, map_location="cpu", weights_only=True)
    except pickle.UnpicklingError as error:
        if not re.search(r"unsupported (?:global: )?GLOBAL", str(error), re.IGNORECASE) and _truncated_pickle(path):
            raise UserError(f"{path}: not a readable PyTorch checkpoint (damaged or truncated: the pickle stream "
                            "breaks off before its end)") from None
        raise UserError(
            f"{path}: refused to load: {_unsafe_reason(error, path)}, and unpickling it could run code. "
            "resnet3d loads only tensors and plain data (torch.load weights_only=True) and never "
            "unpickles arbitrary code. If you trust the file, convert it yourself: "
            f"python -c \"import torch; c = torch.load('{path}', weights_only=False); "
            "torch.save(c.get('state_dict', c) if isinstance(c, dict) else c.state_dict(), 'weights.pth')\""
        ) from None
    except (RuntimeError, EOFError, OSError, ValueError, KeyError, IndexError, TypeError, AttributeError) as error:
        # a damaged or truncated file: torch's unpickler fails in many ways
        if isinstance(error, FileNotFoundError):
            raise UserError(f"{path}: no such file") from None
        detail = str(error).splitlines()[0].split(". ")[0] if str(error) else ""  # torch's first sentence
        raise UserError(f"{path}: not a readable PyTorch checkpoint (damaged or truncated: "
                        f"{type(error).__name__}{': ' + detail if detail else ''})") from None


def _is_torch7(head: bytes, path: Path) -> bool:
    if head.startswith(b"PK") or head[:1] == b"\x80":  # torch.save zip / pickle
        return False
    if len(head) >= 4 and int.from_bytes(head[:4], "little") in range(0, 9):
        return True
    return path.suffix.lower() == ".t7"


def _all_zero(path: Path, chunk_size: int = 1 << 20) -> bool:
    with open(path, "rb") as handle:
        while True:
            chunk = handle.read(chunk_size)
            if not chunk:
                return True
            if chunk.count(0) != len(chunk):
                return False


def _is_tensor_dict(value: Any) -> bool:
    return isinstance(value, Mapping) and bool(value) and all(isinstance(v, torch.Tensor) for v in value.values())


def _as_int(value: Any) -> Optional[int]:
    if value is None:
        return None
    if isinstance(value, torch.Tensor) and value.numel() == 1:
        value = value.item()
    try:
        return int(value)
    except (TypeError, ValueError):
        return None


# -- the loader -----------------------------------------------------------------------------


def load_checkpoint(path: PathLike, bgr_premodel: bool = False) -> LoadedCheckpoint:
    """Read any supported checkpoint; state_dict in our names, model_config ready to build.

    ``bgr_premodel`` swaps the first conv's input channels 1 and 3, as the seed's flag does,
    for weights trained on BGR frames.
    """
    path = Path(path)
    if path.is_dir():
        raise UserError(f"{path} is a folder: pass a checkpoint file in it (e.g. {path / 'model_best.pth'})")
    if not path.is_file():
        raise UserError(f"{path}: no such file")
    with open(path, "rb") as handle:
        head = handle.read(8)
    if head == bytes(8) and _all_zero(path):
        # read as Torch7, zeros are one nil object followed by junk: say what the file really is
        raise UserError(f"{path}: not a checkpoint: all its {path.stat().st_size} bytes are zero (a copy or "
                        "download that never received its data); copy the checkpoint again")
    if _is_torch7(head, path):
        loaded = _load_torch7(path)
    else:
        loaded = _from_torch_object(torch_load_safely(path), path)
    if bgr_premodel:
        _swap_bgr(loaded)
    return loaded


def _load_torch7(path: Path) -> LoadedCheckpoint:
    from resnet3d.checkpoints.seed_t7 import convert_seed_model, epoch_from_filename, map_layers_in_order
    from resnet3d.checkpoints.torch7 import read_t7

    root = read_t7(path)
    try:
        seed = convert_seed_model(root, path)
    except UserError as error:
        raise UserError(f"{path}: {error}") from None
    notes = list(seed.notes)
    state_dict = seed.state_dict
    config = dict(seed.model_config)
    if state_dict is None:  # C3D: match the layers in order onto our model
        from resnet3d.models import create_model

        with torch.device("meta"):
            model = create_model(**config)
        try:
            state_dict, mapping_notes = map_layers_in_order(seed, model)
        except UserError as error:
            raise UserError(f"{path}: {error}") from None
        notes += mapping_notes
    return LoadedCheckpoint(
        path=path,
        source_format="torch7",
        state_dict=state_dict,
        model_config=config,
        epoch=epoch_from_filename(path),
        arch=config["model"] + (f"-{config['model_depth']}" if config.get("model_depth") else ""),
        input_norm=SEED,
        notes=notes,
    )


def _from_torch_object(obj: Any, path: Optional[Path]) -> LoadedCheckpoint:
    where = str(path) if path is not None else "checkpoint"
    if not isinstance(obj, Mapping):
        raise UserError(f"{where}: holds a {type(obj).__name__}, not a checkpoint dict or a state_dict")

    if obj.get("format") == OUR_FORMAT:
        return _from_ours(obj, path)
    if _is_tensor_dict(obj):
        return _from_state_dict(dict(obj), path, "state_dict", {})
    for key in _STATE_DICT_KEYS:
        if _is_tensor_dict(obj.get(key)):
            return _from_state_dict(dict(obj[key]), path, "successor", obj, state_key=key)
    keys = ", ".join(map(str, list(obj)[:8]))
    raise UserError(
        f"{where}: found no weights: expected a 'state_dict' entry of tensors or a bare state_dict, "
        f"got the keys {keys}"
    )


def _from_ours(obj: Mapping[str, Any], path: Optional[Path]) -> LoadedCheckpoint:
    where = str(path) if path is not None else "checkpoint"
    version = obj.get("format_version", 1)
    if _as_int(version) is None or _as_int(version) > 1:
        raise UserError(f"{where}: resnet3d checkpoint format version {version} is newer than this resnet3d reads (1)")
    if not _is_tensor_dict(obj.get("state_dict")) or not isinstance(obj.get("model_config"), Mapping):
        raise UserError(f"{where}: a resnet3d checkpoint without 'state_dict' or 'model_config'")
    state_dict, notes = canonical_state_dict(obj["state_dict"])
    norm = obj.get("input_norm")
    try:
        input_norm = InputNorm.from_dict(norm) if norm is not None else None
    except (KeyError, TypeError, ValueError) as error:
        raise UserError(f"{where}: bad 'input_norm' entry ({error!r})") from None
    class_names = obj.get("class_names")
    return LoadedCheckpoint(
        path=path,
        source_format=OUR_FORMAT,
        state_dict=state_dict,
        model_config=dict(obj["model_config"]),
        epoch=_as_int(obj.get("epoch")),
        arch=obj.get("arch"),
        class_names=list(class_names) if class_names is not None else None,
        input_norm=input_norm,
        optimizer=obj.get("optimizer"),
        scheduler=obj.get("scheduler"),
        extra={k: v for k, v in obj.items() if k not in _OURS_TOP_LEVEL},
        notes=notes,
    )


def _from_state_dict(
    raw: Dict[str, torch.Tensor], path: Optional[Path], source: str, container: Mapping[str, Any], state_key: str = ""
) -> LoadedCheckpoint:
    from resnet3d.checkpoints.torchvision_map import (
        TORCHVISION_KINETICS,
        is_torchvision_video_resnet,
        map_torchvision_state_dict,
        notes_for_torchvision,
    )

    where = str(path) if path is not None else "checkpoint"
    state_dict, notes = canonical_state_dict(raw)
    arch = container.get("arch")
    arch = str(arch) if arch is not None else None
    input_norm = None
    try:
        if is_torchvision_video_resnet(state_dict):
            state_dict, config = map_torchvision_state_dict(state_dict)
            state_dict, _ = canonical_state_dict(state_dict)
            source, input_norm = "torchvision", TORCHVISION_KINETICS
            notes += notes_for_torchvision()
        else:
            config, infer_notes = infer_model_config(state_dict, arch)
            notes += infer_notes
            if config.get("stem_width") is not None and config["model"] == "wideresnet":
                notes.append("the 2018 Wide ResNet layout (64-channel stem): built with stem_width=64")
            if saved_before_pytorch_041(raw):
                # the 2018 release's default input, with which its released models were trained
                input_norm = SEED
                notes.append("saved by PyTorch < 0.4.1, so by the successor's 2018 release, whose default input "
                             "was 0-255 values minus the ActivityNet mean (the seed's): fed that way unless "
                             "normalisation flags say otherwise")
    except UserError as error:
        raise UserError(f"{where}: {error}") from None
    extra = {k: v for k, v in container.items() if k not in (state_key, "epoch", "arch", "optimizer", "scheduler")}
    return LoadedCheckpoint(
        path=path,
        source_format=source,
        state_dict=state_dict,
        model_config=config,
        epoch=_as_int(container.get("epoch")),
        arch=arch,
        input_norm=input_norm,
        optimizer=container.get("optimizer") if isinstance(container.get("optimizer"), Mapping) else None,
        scheduler=container.get("scheduler") if isinstance(container.get("scheduler"), Mapping) else None,
        extra=extra,
        notes=notes,
    )


def checkpoint_from_state_dict(state_dict: Mapping[str, torch.Tensor], arch: Optional[str] = None) -> LoadedCheckpoint:
    """The loader's view of an in-memory state_dict (any supported names)."""
    return _from_state_dict(dict(state_dict), None, "state_dict", {"arch": arch} if arch else {})


def _swap_bgr(loaded: LoadedCheckpoint) -> None:
    """The seed's --bgr_premodel: swap input channels 1 and 3 of the first convolution."""
    for name, tensor in loaded.state_dict.items():
        if name.endswith(".weight") and tensor.dim() == 5:
            if tensor.shape[1] != 3:
                raise UserError(f"--bgr_premodel: the first convolution '{name}' has {tensor.shape[1]} input channels, not 3")
            loaded.state_dict[name] = tensor[:, [2, 1, 0]].contiguous()
            loaded.notes.append(f"--bgr_premodel: swapped input channels 1 and 3 of {name}")
            return
    raise UserError("--bgr_premodel: the checkpoint has no 3D convolution")


# -- building and loading into models -------------------------------------------------------


def load_weights(
    model: nn.Module,
    state_dict: Mapping[str, torch.Tensor],
    strict: bool = True,
    source: str = "the checkpoint",
    spelling: Optional[Mapping[str, str]] = None,
    finetune: bool = True,
) -> Tuple[List[str], List[str]]:
    """Load ``state_dict`` (any supported names) into ``model``; explain any mismatch.

    With ``strict=False`` names missing on either side are skipped (and returned as
    ``(missing, unexpected)``), but a shape mismatch is still an error. Errors are UserErrors
    with a table of the differing names and shapes and the flag that would fix them, spelled as
    ``spelling`` says (``mismatch_message``: the command's own flags; ``finetune``: whether it
    can fine-tune).
    """
    canonical, _ = canonical_state_dict(state_dict)
    expected = model.state_dict()
    diff = compare_state_dicts(canonical, expected)
    if diff.mismatched or (strict and diff):
        try:
            checkpoint_config: Optional[Dict[str, Any]] = infer_model_config(canonical)[0]
        except UserError:
            checkpoint_config = None
        try:
            model_config: Optional[Dict[str, Any]] = getattr(model, "model_config")
        except AttributeError:
            model_config = None
        raise UserError(mismatch_message(diff, source, checkpoint_config, model_config, spelling, finetune))
    result = model.load_state_dict(canonical, strict=strict)
    return list(result.missing_keys), list(result.unexpected_keys)


def build_model_from_checkpoint(
    source: Union[PathLike, LoadedCheckpoint],
    *,
    strict: bool = True,
    bgr_premodel: bool = False,
    new_n_classes: Optional[int] = None,
    spelling: Optional[Mapping[str, str]] = None,
    **overrides: Any,
) -> Tuple[nn.Module, LoadedCheckpoint]:
    """Build the checkpoint's model, load its weights strictly, and return both.

    ``overrides`` change ``create_model`` arguments (e.g. ``no_max_pool=True``,
    ``conv1_t_stride=2``, which the weights cannot show); an override the weights contradict
    raises the mismatch table, in the flags ``spelling`` gives (the calling command's; the
    successor's by default). ``new_n_classes`` then replaces the classifier, for fine-tuning
    (the successor's ``--n_pretrain_classes`` then ``--n_classes``).
    """
    from resnet3d.models import create_model

    loaded = source if isinstance(source, LoadedCheckpoint) else load_checkpoint(source, bgr_premodel=bgr_premodel)
    if isinstance(source, LoadedCheckpoint) and bgr_premodel:
        loaded = replace(source, state_dict=dict(source.state_dict), notes=list(source.notes))
        _swap_bgr(loaded)
    config = {**loaded.model_config, **overrides}
    model = create_model(**config)
    load_weights(model, loaded.state_dict, strict=strict, source=loaded.describe_source(), spelling=spelling,
                 finetune=new_n_classes is not None)
    if new_n_classes is not None and new_n_classes != model.model_config.get("n_classes"):
        model.reset_classifier(new_n_classes)
    return model, replace(loaded, model_config=model.model_config)
