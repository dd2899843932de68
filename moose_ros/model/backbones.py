"""Dilated torchvision backbones wrapped in ``IntermediateLayerGetter`` (parameter names as torchvision's).

Every function returns ``(backbone, channels)``: ``backbone(x)`` maps float [N, 3, H, W] to a dict of feature
maps and ``channels`` maps each returned key to its channel count. ``"out"`` is the deepest feature map at
``H/output_stride``; ``"low_level"`` (when asked for) is ResNet ``layer1`` at ``H/4``.
Weights are always random (``weights=None``): nothing can be downloaded; load trained weights afterwards.
"""

from __future__ import annotations

from torch import nn
from torchvision.models import mobilenet_v3_large, resnet18, resnet50, resnet101
from torchvision.models._utils import IntermediateLayerGetter
from torchvision.models.resnet import BasicBlock

__all__ = ["mobilenet_v3_large_backbone", "resnet_backbone"]

_RESNETS = {18: resnet18, 50: resnet50, 101: resnet101}


def _dilation_flags(output_stride: int) -> list[bool]:
    """torchvision's ``replace_stride_with_dilation`` for layer2..layer4 at an output stride of 8 or 16."""
    return [False, output_stride == 8, True]


def _dilate_basic_layer(layer: nn.Sequential, previous_dilation: int, dilation: int) -> None:
    """Turn the stride-2 ``BasicBlock`` stage ``layer`` into a dilated stride-1 stage (in place).

    Mirrors what torchvision does for bottleneck ResNets: the conv that carried the stride keeps the previous
    dilation, every 3x3 conv after it uses ``dilation``; the 1x1 shortcut loses its stride. Parameter shapes
    and names are unchanged.
    """
    for index, block in enumerate(layer):
        if not isinstance(block, BasicBlock):
            raise TypeError(f"expected BasicBlock, got {type(block).__name__}")
        first = previous_dilation if index == 0 else dilation
        for conv, rate in ((block.conv1, first), (block.conv2, dilation)):
            conv.stride = (1, 1)
            conv.dilation = (rate, rate)
            conv.padding = (rate, rate)
        if block.downsample is not None:
            block.downsample[0].stride = (1, 1)
        block.stride = 1


def resnet_backbone(
    depth: int, *, output_stride: int = 8, low_level: bool = False
) -> tuple[IntermediateLayerGetter, dict[str, int]]:
    """A dilated ResNet-``depth`` (18, 50 or 101) with ``output_stride`` 8 or 16.

    ResNet-50/101 use torchvision's ``replace_stride_with_dilation``; ResNet-18 (``BasicBlock``, which
    torchvision does not dilate) is dilated in place with the same convention.

    Returns:
        ``backbone`` returning ``{"out": layer4}`` (plus ``{"low_level": layer1}`` if ``low_level``) and the
        channel counts of those keys.
    """
    flags = _dilation_flags(output_stride)
    if depth == 18:
        net = resnet18(weights=None)
        dilation = 1
        for name, flag in zip(("layer2", "layer3", "layer4"), flags, strict=True):
            if flag:
                previous, dilation = dilation, dilation * 2
                _dilate_basic_layer(getattr(net, name), previous, dilation)
        out_channels, low_channels = 512, 64
    else:
        net = _RESNETS[depth](weights=None, replace_stride_with_dilation=flags)
        out_channels, low_channels = 2048, 256
    return_layers = {"layer4": "out"}
    channels = {"out": out_channels}
    if low_level:
        return_layers = {"layer1": "low_level", "layer4": "out"}
        channels["low_level"] = low_channels
    return IntermediateLayerGetter(net, return_layers=return_layers), channels


def _dilate_inverted_residuals(blocks: list[nn.Module], dilation: int) -> None:
    """Set every depthwise (kernel > 1) conv in ``blocks`` to stride 1 and ``dilation`` (torchvision's rule)."""
    for block in blocks:
        for module in block.modules():
            if isinstance(module, nn.Conv2d) and module.kernel_size[0] > 1:
                kernel = module.kernel_size[0]
                module.stride = (1, 1)
                module.dilation = (dilation, dilation)
                pad = (kernel - 1) // 2 * dilation
                module.padding = (pad, pad)


def mobilenet_v3_large_backbone(
    *, output_stride: int = 16, reduced_tail: bool = False
) -> tuple[IntermediateLayerGetter, dict[str, int]]:
    """MobileNetV3-Large features as torchvision's ``deeplabv3_mobilenet_v3_large`` uses them.

    ``output_stride=16`` is torchvision's ``dilated=True`` (last stage dilated by 2); ``output_stride=8`` also
    dilates the stride-16 stage (by 2) and the last stage by 4. ``reduced_tail`` halves the last stage's
    channels (torchvision's option; 480 instead of 960 output channels).

    Returns:
        ``backbone`` returning ``{"out": features[-1]}`` and ``{"out": channels}``.
    """
    features = mobilenet_v3_large(weights=None, dilated=True, reduced_tail=reduced_tail).features
    strided = [i for i, block in enumerate(features) if getattr(block, "_is_cn", False)]
    if output_stride == 8:
        stage3, stage4 = strided[-2], strided[-1]
        _dilate_inverted_residuals(list(features[stage3:stage4]), 2)
        _dilate_inverted_residuals(list(features[stage4:-1]), 4)
    out_pos = len(features) - 1
    channels = {"out": int(features[out_pos].out_channels)}
    return IntermediateLayerGetter(features, return_layers={str(out_pos): "out"}), channels
