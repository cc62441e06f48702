"""Wide ResNet-50: bottlenecks with expansion 2 and stage widths multiplied by ``k``.

Two layouts exist. The successor's 2020 code widens the stem too (``conv1`` has 64*k channels),
and that is the default here. Its CVPR2018 code kept a 64-channel stem; build that one with
``stem_width=64``. The checkpoints of one do not fit the other.
"""
from __future__ import annotations

from resnet3d.models.backbone import BASE_WIDTHS, RESNET_OPTIONS, SHORTCUT_TYPES, ResNet3d, build_resnet_like
from resnet3d.models.blocks import WideBottleneck
from resnet3d.models.registry import ModelFamily, register_family

CVPR2018_STEM_WIDTH = 64  # stem_width of the 2018 layout


def build_wideresnet(depth: int, *, k: int, **options) -> ResNet3d:
    widths = tuple(width * k for width in BASE_WIDTHS)
    return build_resnet_like(depth, basic=WideBottleneck, bottleneck=WideBottleneck, base_widths=widths, **options)


register_family(
    ModelFamily(
        name="wideresnet",
        depths=(50,),
        build=build_wideresnet,
        options={**RESNET_OPTIONS, "k": 2},
        choices={"shortcut_type": SHORTCUT_TYPES},
        summary="Wide ResNet (width k; stem_width=64 for the CVPR2018 layout)",
    )
)
