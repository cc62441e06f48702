"""R(2+1)D (depths 10-200): every 3x3x3 conv factorised into a spatial 1x3x3 and a temporal 3x1x1
conv, with the middle width that keeps the parameter count (the successor's formula)."""
from __future__ import annotations

from resnet3d.models.backbone import (
    RESNET_OPTIONS,
    SHORTCUT_TYPES,
    STAGE_BLOCKS,
    ResNet3d,
    build_resnet_like,
    conv2plus1d_stem,
)
from resnet3d.models.blocks import BasicBlock, Bottleneck, conv2plus1d_unit
from resnet3d.models.registry import ModelFamily, register_family


def build_resnet2p1d(depth: int, **options) -> ResNet3d:
    return build_resnet_like(
        depth, basic=BasicBlock, bottleneck=Bottleneck, conv_unit=conv2plus1d_unit, stem=conv2plus1d_stem, **options
    )


register_family(
    ModelFamily(
        name="resnet2p1d",
        depths=tuple(STAGE_BLOCKS),
        build=build_resnet2p1d,
        options=RESNET_OPTIONS,
        choices={"shortcut_type": SHORTCUT_TYPES},
        summary="R(2+1)D: (2+1)D-factorised 3D ResNet (successor)",
    )
)
