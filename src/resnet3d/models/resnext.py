"""ResNeXt (depths 50-200): grouped bottlenecks, ``cardinality`` paths, stage widths 128-1024.

The layout is the successor's CVPR2018 one, with a 64-channel stem: its 2020 constructor passes
``n_classes`` where the backbone expects ``widen_factor`` and cannot build a working model, so
every ResNeXt checkpoint users hold is a 2018 one. Unlike the 2018 code, the classifier's width
follows the real feature width, so cardinalities other than 32 work.
"""
from __future__ import annotations

from resnet3d.errors import UserError
from resnet3d.models.backbone import RESNET_OPTIONS, SHORTCUT_TYPES, ResNet3d, build_resnet_like
from resnet3d.models.blocks import ResNeXtBottleneck
from resnet3d.models.registry import ModelFamily, register_family

RESNEXT_WIDTHS = (128, 256, 512, 1024)
RESNEXT_STEM_WIDTH = 64


def build_resnext(depth: int, *, cardinality: int, **options) -> ResNet3d:
    narrowest = int(RESNEXT_WIDTHS[0] * options["widen_factor"])
    if narrowest // 32 < 1:
        raise UserError(f"resnext needs stage widths of at least 32; widen_factor {options['widen_factor']} is too small")
    return build_resnet_like(
        depth,
        basic=ResNeXtBottleneck,
        bottleneck=ResNeXtBottleneck,
        base_widths=RESNEXT_WIDTHS,
        block_kwargs={"cardinality": cardinality},
        default_stem_width=RESNEXT_STEM_WIDTH,
        **options,
    )


register_family(
    ModelFamily(
        name="resnext",
        depths=(50, 101, 152, 200),
        build=build_resnext,
        options={**RESNET_OPTIONS, "cardinality": 32},
        choices={"shortcut_type": SHORTCUT_TYPES},
        summary="ResNeXt (cardinality groups; successor, CVPR2018 layout)",
    )
)
