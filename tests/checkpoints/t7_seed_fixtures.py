"""Build the seed's Lua Torch model trees (as its models/*.lua make them) from known weights.

These are test fixtures: they mirror ``models/resnet.lua`` and ``models/c3d.lua`` module by module
(cudnn.* or nn.* class names, conv biases the seed's BNs absorb, the A/B/C shortcut modules), so
the loader can be checked against weights we chose.
"""
from __future__ import annotations

from typing import Dict, List, Optional, Tuple

import torch

from resnet3d.checkpoints.torch7 import LuaTable, T7Storage, TorchObject


def module(typename: str, **fields) -> TorchObject:
    base = {"output": torch.empty(0), "gradInput": torch.empty(0), "train": False, "_type": "torch.FloatTensor"}
    base.update(fields)
    return TorchObject(typename, LuaTable(base))


def container(typename: str, children: List[TorchObject], **fields) -> TorchObject:
    return module(typename, modules=list(children), **fields)


class SeedTreeBuilder:
    """Makes modules with the seed's fields; ``pkg`` is 'cudnn' or 'nn' for the GPU-able layers."""

    def __init__(self, pkg: str = "nn", conv_bias: bool = False, seed: int = 0):
        self.pkg = pkg
        self.conv_bias = conv_bias
        self.generator = torch.Generator().manual_seed(seed)
        self.parameters: List[Tuple[TorchObject, str]] = []  # (module, field) of every parameter

    def conv(self, weight: torch.Tensor, stride: Tuple[int, int, int], padding: Tuple[int, int, int]) -> Tuple[TorchObject, Optional[torch.Tensor]]:
        out_planes, in_planes, k_t, k_h, k_w = weight.shape
        fields = dict(
            nInputPlane=in_planes, nOutputPlane=out_planes, kT=k_t, kH=k_h, kW=k_w,
            dT=stride[0], dH=stride[1], dW=stride[2], padT=padding[0], padH=padding[1], padW=padding[2],
            weight=weight.clone(), gradWeight=torch.empty(0),
        )
        bias = None
        if self.conv_bias:
            bias = torch.randn(out_planes, generator=self.generator)
            fields.update(bias=bias.clone(), gradBias=torch.empty(0))
        made = module(f"{self.pkg}.VolumetricConvolution", **fields)
        self.parameters += [(made, "weight")] + ([(made, "bias")] if bias is not None else [])
        return made, bias

    def bn(self, ours: Dict[str, torch.Tensor], prefix: str, conv_bias: Optional[torch.Tensor]) -> TorchObject:
        """Our BN's values; with a conv bias b before it, the seed's running_mean is ours + b."""
        mean = ours[f"{prefix}.running_mean"].clone()
        if conv_bias is not None:
            mean = mean + conv_bias
        made = module(
            f"{self.pkg}.VolumetricBatchNormalization",
            weight=ours[f"{prefix}.weight"].clone(), bias=ours[f"{prefix}.bias"].clone(),
            running_mean=mean, running_var=ours[f"{prefix}.running_var"].clone(),
            eps=1e-5, momentum=0.1, affine=True, gradWeight=torch.empty(0), gradBias=torch.empty(0),
        )
        self.parameters += [(made, "weight"), (made, "bias")]
        return made

    def conv_bn(self, ours: Dict[str, torch.Tensor], conv: str, bn: str, stride, padding) -> List[TorchObject]:
        conv_module, bias = self.conv(ours[f"{conv}.weight"], stride, padding)
        return [conv_module, self.bn(ours, bn, bias)]

    def relu(self) -> TorchObject:
        return module(f"{self.pkg}.ReLU", inplace=True, threshold=0, val=0)

    def pool(self, kind: str, kernel, stride, padding=(0, 0, 0), ceil=False) -> TorchObject:
        return module(
            f"{self.pkg}.Volumetric{kind}Pooling",
            kT=kernel[0], kH=kernel[1], kW=kernel[2], dT=stride[0], dH=stride[1], dW=stride[2],
            padT=padding[0], padH=padding[1], padW=padding[2], ceil_mode=ceil,
        )

    def linear(self, weight: torch.Tensor, bias: torch.Tensor) -> TorchObject:
        made = module("nn.Linear", weight=weight.clone(), bias=bias.clone(), gradWeight=torch.empty(0), gradBias=torch.empty(0))
        self.parameters += [(made, "weight"), (made, "bias")]
        return made

    def view(self, n: int) -> TorchObject:
        return module("nn.View", size=T7Storage(torch.tensor([n], dtype=torch.int64), "torch.LongStorage"),
                      numElements=n, numInputDims=4)

    def log_softmax(self) -> TorchObject:
        return module(f"{self.pkg}.LogSoftMax")

    def flatten_parameters(self) -> None:
        """As Lua's model:getParameters(): every weight and bias becomes a view of one storage."""
        tensors = [m.fields[name] for m, name in self.parameters]
        flat = torch.cat([t.reshape(-1) for t in tensors])
        offset = 0
        for (m, name), tensor in zip(self.parameters, tensors):
            m.fields[name] = flat[offset : offset + tensor.numel()].view(tensor.shape)
            offset += tensor.numel()


def seed_resnet(ours: Dict[str, torch.Tensor], depth_blocks, bottleneck: bool, shortcut: str,
                builder: SeedTreeBuilder, wrap: bool = True) -> TorchObject:
    """The tree models/resnet.lua builds, holding our ResNet's weights (state_dict ``ours``)."""
    b = builder
    layers = b.conv_bn(ours, "conv1", "bn1", (1, 2, 2), (3, 3, 3))
    layers += [b.relu(), b.pool("Max", (3, 3, 3), (2, 2, 2), (1, 1, 1))]
    in_planes = 64
    for stage, (count, planes) in enumerate(zip(depth_blocks, (64, 128, 256, 512)), start=1):
        blocks = []
        for index in range(count):
            stride = 2 if (stage > 1 and index == 0) else 1
            out_planes = planes * (4 if bottleneck else 1)
            p = f"layer{stage}.{index}"
            residual: List[TorchObject] = []
            if bottleneck:
                residual += b.conv_bn(ours, f"{p}.conv1", f"{p}.bn1", (1, 1, 1), (0, 0, 0)) + [b.relu()]
                residual += b.conv_bn(ours, f"{p}.conv2", f"{p}.bn2", (stride,) * 3, (1, 1, 1)) + [b.relu()]
                residual += b.conv_bn(ours, f"{p}.conv3", f"{p}.bn3", (1, 1, 1), (0, 0, 0))
            else:
                residual += b.conv_bn(ours, f"{p}.conv1", f"{p}.bn1", (stride,) * 3, (1, 1, 1)) + [b.relu()]
                residual += b.conv_bn(ours, f"{p}.conv2", f"{p}.bn2", (1, 1, 1), (1, 1, 1))
            if shortcut == "C" or (shortcut == "B" and in_planes != out_planes):
                short = container("nn.Sequential",
                                  b.conv_bn(ours, f"{p}.downsample.0", f"{p}.downsample.1", (stride,) * 3, (0, 0, 0)))
            elif in_planes != out_planes:
                short = container("nn.Sequential", [
                    b.pool("Average", (1, 1, 1), (stride,) * 3),
                    container("nn.Concat", [module("nn.Identity"), module("nn.MulConstant", constant_scalar=0, inplace=False)],
                              dimension=2),
                ])
            else:
                short = module("nn.Identity")
            concat = container("nn.ConcatTable", [container("nn.Sequential", residual), short])
            blocks.append(container("nn.Sequential", [concat, module("nn.CAddTable", inplace=True), b.relu()]))
            in_planes = out_planes
        layers.append(container("nn.Sequential", blocks))
    features = in_planes
    layers += [b.pool("Average", (1, 4, 4), (1, 1, 1)), b.view(features),
               b.linear(ours["fc.weight"], ours["fc.bias"]), b.log_softmax()]
    model = container("nn.Sequential", layers)
    # The seed's model_<epoch>.t7: the DataParallelTable-extracted model inside one Sequential.
    return container("nn.Sequential", [model]) if wrap else model


def seed_c3d(ours: Dict[str, torch.Tensor], batch_norm: bool, global_pooling: bool, builder: SeedTreeBuilder,
             dropout: float = 0.5) -> TorchObject:
    """The tree models/c3d.lua builds: Sequential(features, classifier), our C3D's weights inside."""
    b = builder
    features: List[TorchObject] = []
    for name in ("1a", "p1", "2a", "p", "3a", "3b", "p", "4a", "4b", "p", "5a", "5b"):
        if name == "p1":
            features.append(b.pool("Max", (1, 2, 2), (1, 2, 2), ceil=True))
        elif name == "p":
            features.append(b.pool("Max", (2, 2, 2), (2, 2, 2), ceil=True))
        else:
            conv = module(f"{b.pkg}.VolumetricConvolution", weight=ours[f"conv{name}.weight"].clone(),
                          bias=ours[f"conv{name}.bias"].clone(), kT=3, kH=3, kW=3, dT=1, dH=1, dW=1, padT=1, padH=1, padW=1)
            features.append(conv)
            if batch_norm:
                features.append(b.bn(ours, f"bn{name}", None))
            features.append(b.relu())
    classifier: List[TorchObject] = []
    if global_pooling:
        classifier += [b.pool("Average", (2, 7, 7), (1, 1, 1)), b.view(512), b.linear(ours["fc.weight"], ours["fc.bias"])]
    else:
        classifier += [b.pool("Max", (2, 2, 2), (2, 2, 2), ceil=True), b.view(8192)]
        for fc, bn in (("fc6", "bn6"), ("fc7", "bn7")):
            classifier.append(b.linear(ours[f"{fc}.weight"], ours[f"{fc}.bias"]))
            if batch_norm:
                made = b.bn(ours, bn, None)
                made.typename = "nn.BatchNormalization"
                classifier.append(made)
            classifier += [b.relu(), module("nn.Dropout", p=dropout, v2=True, inplace=False)]
        classifier.append(b.linear(ours["fc8.weight"], ours["fc8.bias"]))
    classifier.append(b.log_softmax())
    return container("nn.Sequential", [container("nn.Sequential", features), container("nn.Sequential", classifier)])
