"""Key layouts of other people's segmentation weights, and their detection (used by ``moose import``).

Three source formats (after the ``module.`` prefix of ``nn.DataParallel`` is stripped):

- ``moose-eccv2022``, the MOoSe authors' release (``{"model_state_dict": ...}``): DeepLabV3 with torchvision's
  head under ``classifier.0..4``; DeepLabV3+ in VainF's layout; PSPNet (``classifier.ppm``, ``classifier.conv_last``);
  probes under ``classifier.probes.K``.
- ``vainf``, VainF/DeepLabV3Plus-Pytorch (``{"model_state": ..., "optimizer_state": ..., "cur_itrs": ...}``):
  DeepLabV3 (``classifier.classifier.0..4``) or DeepLabV3+ (``classifier.project`` = low-level 1x1 to 48,
  ``classifier.aspp``, ``classifier.classifier`` = one 3x3 conv + BN + ReLU and a 1x1 to the classes), no probes.
- ``torchvision``: a DeepLabV3 state_dict (``backbone.*``, ``classifier.0..4``, ``aux_classifier.*``), no probes.

A :class:`Layout` renames source module paths to this package's and names the convolutions whose input channels
come in another order than ours (the source concatenates low-level features first, or features before the pyramid
level): :func:`reorder_input_channels` fixes those exactly.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from dataclasses import dataclass

import torch

from moose_ros.errors import CheckpointError, ConfigError

__all__ = [
    "FORMATS",
    "Layout",
    "detect_family",
    "detect_format",
    "detect_trunk",
    "layout_for",
    "release_probe_depth",
    "release_probe_paths",
    "reorder_input_channels",
]

#: Source formats ``moose import --format`` accepts (besides ``auto``).
FORMATS = ("moose-eccv2022", "vainf", "torchvision")
#: Where the source keeps its probes (the MOoSe release only).
SOURCE_PROBES = "classifier.probes."


@dataclass(frozen=True)
class Layout:
    """How one (format, family) names its modules.

    Attributes:
        format, family: e.g. ``("vainf", "deeplabv3plus")``.
        renames: ordered (source prefix, our prefix) pairs; the first matching prefix wins.
        ignored: source prefixes dropped on purpose (reported), e.g. torchvision's ``aux_classifier.``.
    """

    format: str
    family: str
    renames: tuple[tuple[str, str], ...]
    ignored: tuple[str, ...] = ()


_V3PLUS = (("backbone.", "backbone."), ("classifier.project.", "low_level_project."), ("classifier.aspp.", "aspp."),
           ("classifier.classifier.", "decoder."))
_LAYOUTS: dict[tuple[str, str], Layout] = {
    ("moose-eccv2022", "deeplabv3"): Layout("moose-eccv2022", "deeplabv3",
                                            (("backbone.", "backbone."), ("classifier.", "classifier."))),
    ("moose-eccv2022", "deeplabv3plus"): Layout("moose-eccv2022", "deeplabv3plus", _V3PLUS),
    ("moose-eccv2022", "pspnet"): Layout("moose-eccv2022", "pspnet", (
        ("backbone.", "backbone."), ("classifier.ppm.", "pyramid.stages."), ("classifier.conv_last.", "classifier."))),
    ("vainf", "deeplabv3"): Layout("vainf", "deeplabv3",
                                   (("backbone.", "backbone."), ("classifier.classifier.", "classifier."))),
    ("vainf", "deeplabv3plus"): Layout("vainf", "deeplabv3plus", _V3PLUS),
    ("torchvision", "deeplabv3"): Layout("torchvision", "deeplabv3",
                                         (("backbone.", "backbone."), ("classifier.", "classifier.")),
                                         ignored=("aux_classifier.",)),
}


def layout_for(fmt: str, family: str) -> Layout:
    """The :class:`Layout` of ``fmt`` holding a ``family`` network (ConfigError if that pair does not exist)."""
    try:
        return _LAYOUTS[(fmt, family)]
    except KeyError:
        pairs = ", ".join(f"{f} {a}" for f, a in _LAYOUTS)
        raise ConfigError(f"format {fmt!r} has no {family} networks; supported: {pairs}") from None


def _has(state: Mapping[str, torch.Tensor], prefix: str) -> str | None:
    return next((key for key in state if key.startswith(prefix)), None)


def detect_family(state: Mapping[str, torch.Tensor]) -> tuple[str, str]:
    """``(family, evidence key)``: ``deeplabv3``, ``deeplabv3plus`` or ``pspnet``, from the head's key names."""
    for family, prefix in (("pspnet", "classifier.ppm."), ("deeplabv3plus", "classifier.aspp."),
                           ("deeplabv3", "classifier.classifier.0.convs."), ("deeplabv3", "classifier.0.convs.")):
        key = _has(state, prefix)
        if key is not None:
            return family, key
    sample = sorted(k for k in state if k.startswith("classifier."))[:3] or sorted(state)[:3]
    raise CheckpointError(f"no DeepLabV3, DeepLabV3+ or PSPNet head found (expected keys under classifier.0.convs, "
                          f"classifier.classifier.0.convs, classifier.aspp or classifier.ppm; the file has {sample})")


def detect_format(state: Mapping[str, torch.Tensor], family: str) -> tuple[str, str]:
    """``(format, evidence key)`` from the key names (probes: the release; VainF's and torchvision's heads)."""
    probe = _has(state, SOURCE_PROBES)
    if probe is not None:
        return "moose-eccv2022", probe
    if family == "pspnet":
        raise CheckpointError("a PSPNet without probes (classifier.ppm, no classifier.probes) is not a format "
                              "moose import reads; supported: " + ", ".join(FORMATS))
    vainf = _has(state, "classifier.classifier.") or _has(state, "classifier.aspp.")
    if vainf is not None:
        return "vainf", vainf
    return "torchvision", _has(state, "classifier.0.convs.") or "classifier.0"


def _count_blocks(state: Mapping[str, torch.Tensor], layer: str) -> int:
    pattern = re.compile(rf"^backbone\.{layer}\.(\d+)\.")
    indices = {int(m.group(1)) for key in state if (m := pattern.match(key))}
    return max(indices) + 1 if indices else 0


def detect_trunk(state: Mapping[str, torch.Tensor]) -> tuple[str, str]:
    """``(trunk, evidence)``: ``resnet18/50/101`` from the ResNet blocks, ``mobilenet_v3_large`` from torchvision's.

    Raises:
        CheckpointError: a backbone this package does not build (names what was found).
    """
    if "backbone.layer1.0.conv1.weight" in state:
        bottleneck = "backbone.layer1.0.conv3.weight" in state
        blocks = tuple(_count_blocks(state, f"layer{i}") for i in range(1, 5))
        known = {(True, (3, 4, 6, 3)): "resnet50", (True, (3, 4, 23, 3)): "resnet101",
                 (False, (2, 2, 2, 2)): "resnet18"}
        trunk = known.get((bottleneck, blocks))
        kind = "bottleneck" if bottleneck else "basic"
        evidence = f"backbone layer1..layer4 hold {'/'.join(map(str, blocks))} {kind} blocks"
        if trunk is None:
            raise CheckpointError(f"unsupported ResNet: {evidence}; supported: ResNet-18, -50, -101")
        return trunk, evidence
    if "backbone.0.0.weight" in state and _has(state, "backbone.16.") is not None:
        return "mobilenet_v3_large", "backbone.0 .. backbone.16 in torchvision's MobileNetV3-Large layout"
    first = next((k for k in sorted(state) if k.startswith("backbone.")), None)
    raise CheckpointError(f"unsupported backbone (first backbone key {first!r}); supported: ResNet-18/50/101 and "
                          "torchvision's MobileNetV3-Large (VainF's MobileNetV2, HRNet and Xception are not)")


def release_probe_depth(state: Mapping[str, torch.Tensor], family: str) -> int:
    """The release probes' depth d (3x3 blocks after the projection, as its builders count them).

    DeepLab probes: ``predict.{3i, 3i+1}`` per block, ``predict.{3d}`` the classifier. PSPNet probes: one
    ``nn.Sequential`` whose classifier sits at index 4d (the 1x1 projection counts as the first block).
    """
    if family == "pspnet":
        pattern, step = re.compile(r"^classifier\.probes\.0\.(\d+)\.weight$"), 4
    else:
        pattern, step = re.compile(r"^classifier\.probes\.0\.predict\.(\d+)\.weight$"), 3
    indices = [int(m.group(1)) for key in state if (m := pattern.match(key))]
    if not indices or max(indices) % step:
        raise CheckpointError(f"probe 0 of the {family} release has no classifier where its layout puts one "
                              f"(found indices {sorted(indices)})")
    return max(indices) // step


def release_probe_paths(family: str, depth: int) -> dict[str, str]:
    """Release probe module path -> ours (:class:`~moose_ros.model.probes.Probe`), for a release depth ``depth``."""
    if family == "pspnet":
        paths = {"0": "project.0", "1": "project.1", str(4 * depth): "classifier"}
        for j in range(depth - 1):
            paths.update({str(4 + 4 * j): f"blocks.{j}.0", str(5 + 4 * j): f"blocks.{j}.1"})
        return paths
    paths = {"project.0": "project.0", "project.1": "project.1", f"predict.{3 * depth}": "classifier"}
    for i in range(depth):
        paths.update({f"predict.{3 * i}": f"blocks.{i}.0", f"predict.{3 * i + 1}": f"blocks.{i}.1"})
    return paths


def reorder_input_channels(weight: torch.Tensor, groups: tuple[int, ...], order: tuple[int, ...]) -> torch.Tensor:
    """``weight`` [out, in, kh, kw] with its input channels regrouped: source groups of sizes ``groups``,
    taken in ``order`` (e.g. groups (48, 256), order (1, 0): the 256 after the 48 become the first 256).

    Raises:
        CheckpointError: the groups do not add up to the weight's input channels.
    """
    if sum(groups) != weight.shape[1]:
        raise CheckpointError(f"expected {sum(groups)} input channels ({' + '.join(map(str, groups))}), "
                              f"the weight has {weight.shape[1]} (shape {tuple(weight.shape)})")
    starts = [sum(groups[:i]) for i in range(len(groups))]
    return torch.cat([weight[:, starts[i]:starts[i] + groups[i]] for i in order], dim=1).contiguous()
