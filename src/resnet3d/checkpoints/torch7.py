"""Lua Torch7 binary serialisation (``torch.save`` in Lua): a reader and a writer.

The seed wrote its models with ``torch.save(path, model)``. This module reads such files without
Lua and without building or running any code: Lua functions stay opaque bytes, classes become
plain :class:`TorchObject` records of their fields, tensors become ``torch.Tensor``.

The format (little-endian, ``long`` = 8 bytes on 64-bit Linux, 4 on Windows):

- every object starts with an int32 type tag: 0 nil, 1 number (float64), 2 string (int32 length
  + bytes), 3 table, 4 torch object, 5 boolean (int32), 6/7/8 function;
- tables, torch objects and functions carry an int32 reference index next; an index seen before
  refers to the object already read (shared and self-referencing objects);
- a table is an int32 count of key/value pairs, each key and value an object;
- a torch object is a version string ``"V <n>"`` (absent in very old files) and a class name,
  then: for a tensor, int32 ndim, ndim longs of sizes, ndim longs of strides, a long 1-based
  storage offset, and the storage object; for a storage, a long element count and the raw
  elements; for any other class (``nn.*``, ``cudnn.*``), one object holding its fields;
- a function is an int32 byte count, the dumped bytecode, and an object of upvalues.

The writer produces the same format; the tests use it to make ``.t7`` fixtures.
"""
from __future__ import annotations

import io
import os
import struct
from dataclasses import dataclass
from pathlib import Path
from typing import Any, BinaryIO, Dict, List, Optional, Tuple, Union

import numpy as np
import torch

from resnet3d.errors import UserError

TYPE_NIL = 0
TYPE_NUMBER = 1
TYPE_STRING = 2
TYPE_TABLE = 3
TYPE_TORCH = 4
TYPE_BOOLEAN = 5
TYPE_FUNCTION = 6
TYPE_LEGACY_RECUR_FUNCTION = 7
TYPE_RECUR_FUNCTION = 8
_REFERENCED = (TYPE_TABLE, TYPE_TORCH, TYPE_FUNCTION, TYPE_LEGACY_RECUR_FUNCTION, TYPE_RECUR_FUNCTION)

# Element type of every Torch7 tensor/storage class ("Float" -> torch.FloatTensor, torch.CudaTensor).
_ELEMENT_DTYPES: Dict[str, torch.dtype] = {
    "Byte": torch.uint8,
    "Char": torch.int8,
    "Short": torch.int16,
    "Int": torch.int32,
    "Long": torch.int64,
    "Float": torch.float32,
    "Double": torch.float64,
    "Half": torch.float16,
}


def _class_dtype(class_name: str, kind: str) -> Optional[torch.dtype]:
    """dtype of ``torch.<Cuda?><Elem><kind>`` (kind: 'Tensor' or 'Storage'), else None."""
    if not (class_name.startswith("torch.") and class_name.endswith(kind)):
        return None
    element = class_name[len("torch.") : -len(kind)]
    if element.startswith("Cuda"):
        element = element[len("Cuda") :] or "Float"  # torch.CudaTensor holds floats
    return _ELEMENT_DTYPES.get(element)


def _class_name_for(dtype: torch.dtype, kind: str, cuda: bool) -> str:
    for element, candidate in _ELEMENT_DTYPES.items():
        if candidate == dtype:
            if cuda:
                return f"torch.Cuda{'' if element == 'Float' else element}{kind}"
            return f"torch.{element}{kind}"
    raise TypeError(f"Torch7 has no tensor type for {dtype}")


class LuaTable(dict):
    """A Lua table. Hashed by identity, as in Lua, so a table can be a key of another."""

    __hash__ = object.__hash__

    def __eq__(self, other: object) -> bool:
        return self is other

    def __ne__(self, other: object) -> bool:
        return self is not other

    def sequence(self) -> list:
        """The values at keys 1..n (Lua's array part), in order."""
        values = []
        index = 1
        while index in self:
            values.append(self[index])
            index += 1
        return values


@dataclass(eq=False)
class TorchObject:
    """An instance of a Torch7 class other than a tensor or storage (``nn.Linear`` ...)."""

    typename: str
    fields: Any = None
    version: int = 1

    @property
    def short_type(self) -> str:
        """The class name without its package: 'cudnn.ReLU' -> 'ReLU'."""
        return self.typename.rsplit(".", 1)[-1]

    def get(self, key: str, default: Any = None) -> Any:
        return self.fields.get(key, default) if isinstance(self.fields, dict) else default

    def __getitem__(self, key: str) -> Any:
        return self.fields[key]

    def __contains__(self, key: str) -> bool:
        return isinstance(self.fields, dict) and key in self.fields

    def children(self) -> list:
        """The ``modules`` of a container (nn.Sequential, nn.ConcatTable ...), else []."""
        modules = self.get("modules")
        if isinstance(modules, LuaTable):
            return modules.sequence()
        if isinstance(modules, list):
            return list(modules)
        return []


@dataclass(eq=False)
class LuaFunction:
    """A serialised Lua function: its bytecode is kept as bytes and never executed."""

    bytecode: bytes
    upvalues: Any = None


@dataclass(eq=False)
class T7Storage:
    """A storage that no tensor views (``nn.View``'s sizes): a flat tensor and its class name."""

    data: torch.Tensor
    typename: str


class T7FormatError(ValueError):
    """The bytes are not a valid Torch7 binary file (or use an unsupported feature)."""


class _Reader:
    def __init__(self, data: bytes, long_size: int):
        self.data = memoryview(data)
        self.pos = 0
        self.long_code = {8: "<q", 4: "<i"}[long_size]
        self.long_size = long_size
        self.objects: Dict[int, Any] = {}
        self.reading: List[str] = []  # the torch classes being read, for error messages

    # -- primitives -------------------------------------------------------------------------
    def _take(self, n: int) -> memoryview:
        if n < 0 or self.pos + n > len(self.data):
            raise T7FormatError(
                f"unexpected end of file at byte {self.pos} (wanted {n} more bytes)"
                + (f" while reading {self.reading[-1]}" if self.reading else "")
            )
        chunk = self.data[self.pos : self.pos + n]
        self.pos += n
        return chunk

    def int(self) -> int:
        return struct.unpack("<i", self._take(4))[0]

    def long(self) -> int:
        return struct.unpack(self.long_code, self._take(self.long_size))[0]

    def longs(self, n: int) -> List[int]:
        return [self.long() for _ in range(n)]

    def double(self) -> float:
        return struct.unpack("<d", self._take(8))[0]

    def raw_string(self) -> bytes:
        size = self.int()
        if size < 0:
            raise T7FormatError(f"negative string length {size} at byte {self.pos - 4}")
        return bytes(self._take(size))

    def string(self) -> str:
        raw = self.raw_string()
        try:
            return raw.decode("utf-8")
        except UnicodeDecodeError:
            return raw.decode("latin-1")

    # -- objects ----------------------------------------------------------------------------
    def object(self) -> Any:
        tag = self.int()
        if tag == TYPE_NIL:
            return None
        if tag == TYPE_NUMBER:
            return self.double()
        if tag == TYPE_STRING:
            return self.string()
        if tag == TYPE_BOOLEAN:
            return self.int() == 1
        if tag not in _REFERENCED:
            raise T7FormatError(f"unknown object type {tag} at byte {self.pos - 4}")
        index = self.int()
        if index in self.objects:
            return self.objects[index]
        if tag == TYPE_TABLE:
            return self._table(index)
        if tag == TYPE_TORCH:
            return self._torch(index)
        return self._function(index)

    def _table(self, index: int) -> LuaTable:
        table = LuaTable()
        self.objects[index] = table  # before the contents: a table may contain itself
        count = self.int()
        if count < 0:
            raise T7FormatError(f"negative table size {count} at byte {self.pos - 4}")
        for _ in range(count):
            key = self.object()
            value = self.object()
            if isinstance(key, float) and key.is_integer():
                key = int(key)  # Lua's array keys are doubles 1.0, 2.0 ...
            table[key] = value
        return table

    def _function(self, index: int) -> LuaFunction:
        function = LuaFunction(bytecode=self.raw_string())
        self.objects[index] = function
        function.upvalues = self.object()
        return function

    def _torch(self, index: int) -> Any:
        version_or_name = self.string()
        if version_or_name.startswith("V "):
            try:
                version = int(float(version_or_name[2:]))
            except ValueError as error:
                raise T7FormatError(f"bad version string {version_or_name!r}") from error
            class_name = self.string()
        else:  # written before Torch7 versioned its classes
            version, class_name = 0, version_or_name
        self.reading.append(class_name)
        try:
            if _class_dtype(class_name, "Storage") is not None:
                result: Any = self._storage(class_name)
                self.objects[index] = result
            elif _class_dtype(class_name, "Tensor") is not None:
                result = self._tensor(class_name)
                self.objects[index] = result
            else:
                result = TorchObject(typename=class_name, version=version)
                self.objects[index] = result  # before its fields: they may refer back to it
                result.fields = self.object()
        finally:
            self.reading.pop()
        return result

    def _storage(self, class_name: str) -> T7Storage:
        dtype = _class_dtype(class_name, "Storage")
        size = self.long()
        itemsize = torch.empty(0, dtype=dtype).element_size()
        if size < 0 or size * itemsize > len(self.data) - self.pos:
            raise T7FormatError(f"{class_name} of {size} elements does not fit in the file")
        raw = self._take(size * itemsize)
        native = np.dtype(str(dtype).replace("torch.", ""))
        array = np.frombuffer(raw, dtype=native.newbyteorder("<")).astype(native)  # a copy
        return T7Storage(data=torch.from_numpy(array), typename=class_name)

    def _tensor(self, class_name: str) -> torch.Tensor:
        dtype = _class_dtype(class_name, "Tensor")
        ndim = self.int()
        if ndim < 0 or ndim > 64:
            raise T7FormatError(f"{class_name} with {ndim} dimensions")
        sizes = self.longs(ndim)
        strides = self.longs(ndim)
        offset = self.long() - 1  # Lua counts from 1
        storage = self.object()
        if ndim == 0 or storage is None:
            return torch.empty(0, dtype=dtype)
        if not isinstance(storage, T7Storage):
            raise T7FormatError(f"{class_name} refers to a {type(storage).__name__}, not a storage")
        if any(s < 0 for s in sizes) or any(s < 0 for s in strides) or offset < 0:
            raise T7FormatError(f"{class_name} with negative size, stride or offset")
        extent = offset + sum((n - 1) * s for n, s in zip(sizes, strides)) + 1
        if 0 in sizes:
            return torch.empty(sizes, dtype=storage.data.dtype)
        if extent > storage.data.numel():
            raise T7FormatError(
                f"{class_name} of size {sizes} reaches element {extent} of a storage of "
                f"{storage.data.numel()}"
            )
        # A view, as in Lua: tensors flattened by getParameters() share one storage.
        return storage.data.as_strided(sizes, strides, offset)


def _looks_ascii(head: bytes) -> bool:
    return len(head) >= 2 and head[:1].isdigit() and head[1:2] in (b"\n", b"\r")


def parse_t7(data: bytes, long_size: int = 8) -> Any:
    """Parse Torch7 binary bytes into Python objects (raises T7FormatError)."""
    reader = _Reader(data, long_size)
    try:
        result = reader.object()
    except RecursionError as error:
        raise T7FormatError("objects nested too deeply") from error
    if reader.pos != len(data):
        # torch.save writes exactly one object; leftovers mean a misread (e.g. the wrong long size).
        raise T7FormatError(f"{len(data) - reader.pos} bytes left after the object")
    return result


def read_t7(path: Union[str, os.PathLike]) -> Any:
    """Read a Lua Torch ``.t7`` file; never executes anything it contains.

    Tries 8-byte longs (Linux/macOS) first, then 4-byte longs (files written on Windows).
    """
    path = Path(path)
    try:
        data = path.read_bytes()
    except OSError as error:
        raise UserError(f"{path}: cannot read ({error.strerror or error})") from error
    if _looks_ascii(data[:2]):
        raise UserError(
            f"{path}: this is a Torch7 file in ASCII format; only the binary format is read. "
            "Re-save it in Lua: torch.save(out, torch.load(path, 'ascii'))"
        )
    errors = []
    for long_size in (8, 4):
        try:
            return parse_t7(data, long_size)
        except T7FormatError as error:
            errors.append(str(error))
    raise UserError(f"{path}: not a readable Torch7 binary file ({errors[0]})")


# -- writer ---------------------------------------------------------------------------------


class _Writer:
    def __init__(self, stream: BinaryIO, cuda: bool):
        self.stream = stream
        self.cuda = cuda
        self.indices: Dict[int, int] = {}  # id(object) -> reference index
        self.keep_alive: List[Any] = []  # ids stay unique while we write
        self.storages: Dict[Tuple[int, torch.dtype], torch.Tensor] = {}  # one flat view each

    def _int(self, value: int) -> None:
        self.stream.write(struct.pack("<i", value))

    def _long(self, value: int) -> None:
        self.stream.write(struct.pack("<q", value))

    def _string(self, value: Union[str, bytes]) -> None:
        raw = value.encode("utf-8") if isinstance(value, str) else value
        self._int(len(raw))
        self.stream.write(raw)

    def _reference(self, tag: int, obj: Any) -> bool:
        """Write tag + index; True if the object was written before (nothing more to write)."""
        self._int(tag)
        key = id(obj)
        if key in self.indices:
            self._int(self.indices[key])
            return True
        self.indices[key] = len(self.indices) + 1
        self.keep_alive.append(obj)
        self._int(self.indices[key])
        return False

    def object(self, obj: Any) -> None:
        if obj is None:
            self._int(TYPE_NIL)
        elif isinstance(obj, bool):
            self._int(TYPE_BOOLEAN)
            self._int(1 if obj else 0)
        elif isinstance(obj, (int, float)):
            self._int(TYPE_NUMBER)
            self.stream.write(struct.pack("<d", float(obj)))
        elif isinstance(obj, (str, bytes)):
            self._int(TYPE_STRING)
            self._string(obj)
        elif isinstance(obj, torch.Tensor):
            self._tensor(obj)
        elif isinstance(obj, T7Storage):
            if not self._reference(TYPE_TORCH, obj):
                self._string("V 1")
                self._string(obj.typename)
                self._storage_body(obj.data)
        elif isinstance(obj, TorchObject):
            if not self._reference(TYPE_TORCH, obj):
                self._string(f"V {obj.version}")
                self._string(obj.typename)
                self.object(obj.fields)
        elif isinstance(obj, LuaFunction):
            if not self._reference(TYPE_FUNCTION, obj):
                self._string(obj.bytecode)
                self.object(obj.upvalues)
        elif isinstance(obj, (dict, list, tuple)):
            if not self._reference(TYPE_TABLE, obj):
                pairs = obj.items() if isinstance(obj, dict) else enumerate(obj, start=1)
                # A Lua table cannot hold nil: such entries simply do not exist.
                present = [(key, value) for key, value in pairs if value is not None]
                self._int(len(present))
                for key, value in present:
                    self.object(key)
                    self.object(value)
        else:
            raise TypeError(f"cannot write {type(obj).__name__} to a Torch7 file")

    def _tensor(self, tensor: torch.Tensor) -> None:
        tensor = tensor.detach().cpu()
        if tensor.dim() == 0:
            raise TypeError("Torch7 has no 0-dimensional tensors; write a number instead")
        if self._reference(TYPE_TORCH, tensor):
            return
        self._string("V 1")
        self._string(_class_name_for(tensor.dtype, "Tensor", self.cuda))
        if tensor.numel() == 0:  # Lua's empty tensor: no dimensions, no storage
            self._int(0)
            self._long(1)
            self._int(TYPE_NIL)
            return
        self._int(tensor.dim())
        for size in tensor.shape:
            self._long(size)
        for stride in tensor.stride():
            self._long(stride)
        self._long(tensor.storage_offset() + 1)
        self._storage(tensor)

    def _storage(self, tensor: torch.Tensor) -> None:
        """The tensor's whole storage, written once however many tensors view it."""
        untyped = tensor.untyped_storage()
        key = (untyped.data_ptr(), tensor.dtype)
        if key not in self.storages:
            count = untyped.nbytes() // tensor.element_size()
            self.storages[key] = torch.empty(0, dtype=tensor.dtype).set_(untyped, 0, (count,))
        flat = self.storages[key]
        if self._reference(TYPE_TORCH, flat):
            return
        self._string("V 1")
        self._string(_class_name_for(flat.dtype, "Storage", self.cuda))
        self._storage_body(flat)

    def _storage_body(self, flat: torch.Tensor) -> None:
        self._long(flat.numel())
        array = flat.contiguous().numpy()
        self.stream.write(array.astype(array.dtype.newbyteorder("<")).tobytes())


def dumps_t7(obj: Any, cuda: bool = False) -> bytes:
    """Serialise ``obj`` as Lua's ``torch.save`` would (binary, 8-byte longs).

    dict/list/tuple -> tables (lists get keys 1..n), :class:`TorchObject` -> class instances,
    tensors -> ``torch.<Type>Tensor`` (``torch.Cuda<Type>Tensor`` with ``cuda=True``), keeping
    storages shared between tensors that view the same memory.
    """
    stream = io.BytesIO()
    _Writer(stream, cuda).object(obj)
    return stream.getvalue()


def write_t7(path: Union[str, os.PathLike], obj: Any, cuda: bool = False) -> None:
    from resnet3d.fileio import atomic_write_bytes

    atomic_write_bytes(path, dumps_t7(obj, cuda=cuda))


def nn_module(typename: str, **fields: Any) -> TorchObject:
    """A Torch7 module record: ``nn_module('nn.Linear', weight=w, bias=b)``."""
    table = LuaTable(fields)
    return TorchObject(typename=typename, fields=table)
