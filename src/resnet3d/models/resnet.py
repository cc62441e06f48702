"""ResNet (depths 10-200) with the seed's three shortcuts: A (zero-padded identity), B (projection
where the shape changes, the successor's default) and C (projection on every block, seed only)."""
from __future__ import annotations

from resnet3d.models.backbone import RESNET_OPTIONS, SHORTCUT_TYPES, STAGE_BLOCKS, ResNet3d, build_resnet_like
from resnet3d.models.blocks import BasicBlock, Bottleneck
from resnet3d.models.registry import ModelFamily, register_family


def build_resnet(depth: int, **options) -> ResNet3d:
    return build_resnet_like(depth, basic=BasicBlock, bottleneck=Bottleneck, **options)


register_family(
    ModelFamily(
        name="resnet",
        depths=tuple(STAGE_BLOCKS),
        build=build_resnet,
        options=RESNET_OPTIONS,
        choices={"shortcut_type": SHORTCUT_TYPES},
        summary="3D ResNet (seed and successor); shortcut A, B or C",
    )
)
