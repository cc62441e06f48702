"""Pre-activation ResNet (depths 10-200), in the layout of the successor's CVPR2018 branch.

The successor's 2020 constructor cannot build it (its blocks take ``inplanes`` where the backbone
passes ``in_planes``); here it is the shared backbone with pre-activation blocks, so the names are
those of the 2018 checkpoints (``layer1.0.bn1`` before ``layer1.0.conv1``) and there is no BN
after the last stage.
"""
from __future__ import annotations

from resnet3d.models.backbone import RESNET_OPTIONS, SHORTCUT_TYPES, STAGE_BLOCKS, ResNet3d, build_resnet_like
from resnet3d.models.blocks import PreActBasicBlock, PreActBottleneck
from resnet3d.models.registry import ModelFamily, register_family


def build_preresnet(depth: int, **options) -> ResNet3d:
    return build_resnet_like(depth, basic=PreActBasicBlock, bottleneck=PreActBottleneck, **options)


register_family(
    ModelFamily(
        name="preresnet",
        depths=tuple(STAGE_BLOCKS),
        build=build_preresnet,
        options=RESNET_OPTIONS,
        choices={"shortcut_type": SHORTCUT_TYPES},
        summary="pre-activation 3D ResNet (successor, CVPR2018 layout)",
    )
)
