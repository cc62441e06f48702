"""The Torch7 binary reader and writer, checked against the format's byte layout."""
from __future__ import annotations

import struct

import pytest
import torch

from resnet3d.checkpoints.torch7 import (
    LuaFunction,
    LuaTable,
    T7FormatError,
    T7Storage,
    TorchObject,
    dumps_t7,
    parse_t7,
    read_t7,
    write_t7,
)
from resnet3d.errors import UserError


def _i(v: int, ) -> bytes:
    return struct.pack("<i", v)


def _l(v: int, size: int = 8) -> bytes:
    return struct.pack("<q" if size == 8 else "<i", v)


def _s(text: str) -> bytes:
    raw = text.encode()
    return _i(len(raw)) + raw


def _float_tensor_bytes(values, index: int, long_size: int = 8) -> bytes:
    """torch.save of a 1-D FloatTensor, as Torch7's File.lua and Tensor.c write it."""
    n = len(values)
    return (
        _i(4) + _i(index) + _s("V 1") + _s("torch.FloatTensor")
        + _i(1) + _l(n, long_size) + _l(1, long_size) + _l(1, long_size)  # ndim, size, stride, 1-based offset
        + _i(4) + _i(index + 1) + _s("V 1") + _s("torch.FloatStorage")
        + _l(n, long_size) + struct.pack(f"<{n}f", *values)
    )


def _hello_world(long_size: int = 8) -> bytes:
    """torch.save(path, {hello = 123, world = torch.FloatTensor{1.5, 2, 3}}), assembled by hand."""
    return (
        _i(3) + _i(1) + _i(2)  # table, reference 1, two pairs
        + _i(2) + _s("hello") + _i(1) + struct.pack("<d", 123.0)
        + _i(2) + _s("world") + _float_tensor_bytes([1.5, 2.0, 3.0], 2, long_size)
    )


@pytest.mark.parametrize("long_size", [8, 4])
def test_reads_a_hand_assembled_file(tmp_path, long_size):
    path = tmp_path / "hello.t7"
    path.write_bytes(_hello_world(long_size))
    obj = read_t7(path)
    assert obj["hello"] == 123.0
    assert obj["world"].dtype == torch.float32
    assert obj["world"].tolist() == [1.5, 2.0, 3.0]


def test_writer_produces_the_torch7_byte_layout():
    assert dumps_t7(torch.tensor([1.5, 2.0, 3.0])) == _float_tensor_bytes([1.5, 2.0, 3.0], 1)
    assert dumps_t7(LuaTable(hello=123)) == _i(3) + _i(1) + _i(1) + _i(2) + _s("hello") + _i(1) + struct.pack("<d", 123.0)
    assert dumps_t7(True) == _i(5) + _i(1)
    assert dumps_t7(None) == _i(0)
    cuda = dumps_t7(torch.ones(2), cuda=True)
    assert _s("torch.CudaTensor") in cuda and _s("torch.CudaStorage") in cuda


def test_objects_round_trip_with_shared_and_self_references():
    shared = LuaTable(x=1.0)
    table = LuaTable(a=shared, b=shared, name="model", flag=False)
    table["self"] = table
    module = TorchObject("nn.Linear", LuaTable(weight=torch.randn(3, 2), bias=torch.randn(3)))
    function = LuaFunction(b"\x1bLua\x51 opaque bytecode", upvalues=LuaTable(n=2.0))
    root = [table, module, module, function, "text"]
    back = parse_t7(dumps_t7(root))
    assert back.sequence()[4] == "text"
    read_table, read_module, again, read_function = back.sequence()[:4]
    assert read_table["a"] is read_table["b"] and read_table["self"] is read_table
    assert read_table["flag"] is False and read_table["name"] == "model"
    assert read_module is again and read_module.typename == "nn.Linear" and read_module.short_type == "Linear"
    assert torch.equal(read_module["weight"], module["weight"])
    assert read_function.bytecode == function.bytecode and read_function.upvalues["n"] == 2.0


@pytest.mark.parametrize(
    "dtype", [torch.uint8, torch.int8, torch.int16, torch.int32, torch.int64, torch.float32, torch.float64]
)
@pytest.mark.parametrize("cuda", [False, True])
def test_every_element_type_round_trips(dtype, cuda):
    tensor = (torch.arange(24) * 3 % 100).to(dtype).reshape(2, 3, 4)
    back = parse_t7(dumps_t7(tensor, cuda=cuda))
    assert back.dtype == dtype and torch.equal(back, tensor)


def test_views_keep_offsets_strides_and_shared_storage():
    flat = torch.randn(50)
    weight = flat[5:29].view(2, 3, 4)
    transposed = weight.transpose(0, 2)
    bias = flat[40:43]
    back = parse_t7(dumps_t7([weight, transposed, bias, torch.empty(0)])).sequence()
    assert torch.equal(back[0], weight) and torch.equal(back[1], transposed) and torch.equal(back[2], bias)
    assert back[0].untyped_storage().data_ptr() == back[2].untyped_storage().data_ptr()
    assert back[3].numel() == 0


def test_a_bare_storage_round_trips():
    storage = T7Storage(torch.tensor([512], dtype=torch.int64), "torch.LongStorage")
    back = parse_t7(dumps_t7(LuaTable(size=storage)))
    assert back["size"].typename == "torch.LongStorage" and back["size"].data.tolist() == [512]


def test_write_t7_is_read_back(tmp_path):
    path = tmp_path / "out" / "model.t7"
    write_t7(path, TorchObject("nn.Sequential", LuaTable(modules=[])), cuda=True)
    assert read_t7(path).typename == "nn.Sequential"


@pytest.mark.parametrize(
    "data, message",
    [
        (_i(4) + _i(1) + _s("V 1") + _s("torch.FloatTensor") + _i(1) + _l(10) + _l(1) + _l(1)
         + _i(4) + _i(2) + _s("V 1") + _s("torch.FloatStorage") + _l(3) + struct.pack("<3f", 1, 2, 3),
         "reaches element"),
        (_i(4) + _i(1) + _s("V 1") + _s("torch.FloatStorage") + _l(1 << 40), "does not fit"),
        (_i(42), "unknown object type"),
        (_i(3) + _i(1) + _i(5), "unexpected end of file"),
    ],
    ids=["tensor-beyond-storage", "huge-storage", "bad-tag", "truncated"],
)
def test_damaged_bytes_are_reported_not_trusted(data, message):
    with pytest.raises(T7FormatError, match=message):
        parse_t7(data)


def test_unreadable_files_name_the_file(tmp_path):
    path = tmp_path / "broken.t7"
    path.write_bytes(_i(3) + _i(1) + _i(5))
    with pytest.raises(UserError, match="broken.t7: not a readable Torch7 binary file"):
        read_t7(path)
    ascii_file = tmp_path / "ascii.t7"
    ascii_file.write_bytes(b"3\n1\n0\n")
    with pytest.raises(UserError, match="ASCII format"):
        read_t7(ascii_file)
