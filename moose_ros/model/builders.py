"""Public MOoSe builders (torchvision style: keyword-only, ``checkpoint=`` instead of ``weights=``).

Every builder argument left at ``None`` takes the checkpoint's value (when ``checkpoint`` is given) or the
documented default. An argument that contradicts the checkpoint's meta raises :class:`CheckpointError` naming
both values; an invalid argument raises :class:`ConfigError` naming the parameter and the allowed values.
Weights start random (nothing is downloaded); pass ``checkpoint`` or use
:func:`~moose_ros.model.checkpoint.load_torchvision_state_dict`.
"""

from __future__ import annotations

import inspect
import json
import os
from collections.abc import Callable, Sequence
from typing import Any

import torch

from moose_ros.errors import CheckpointError, ConfigError
from moose_ros.model.backbones import mobilenet_v3_large_backbone, resnet_backbone
from moose_ros.model.base import MooseSegmentationModel
from moose_ros.model.checkpoint import CheckpointMeta, read_checkpoint
from moose_ros.model.deeplab import ASPP, MooseDeepLabV3, MooseDeepLabV3Plus, deeplab_head
from moose_ros.model.pspnet import MoosePSPNet

__all__ = [
    "ARCHITECTURES",
    "build_from_loaded",
    "build_model",
    "default_model_kwargs",
    "load_checkpoint",
    "moose_deeplabv3_mobilenet_v3_large",
    "moose_deeplabv3_resnet18",
    "moose_deeplabv3_resnet50",
    "moose_deeplabv3_resnet101",
    "moose_deeplabv3plus_resnet50",
    "moose_deeplabv3plus_resnet101",
    "moose_pspnet_resnet50",
    "moose_pspnet_resnet101",
]

PathLike = str | os.PathLike

_COMMON = {"num_classes": 19, "probe_width": 256, "probe_depth": 1, "probe_dropout": 0.5}
#: Arguments that change training behaviour only (no weights): a checkpoint may be rebuilt with another value.
_TRAINING_ONLY = frozenset({"probe_dropout"})
_DEEPLAB = {**_COMMON, "aspp_channels": 256, "atrous_rates": None, "output_stride": 8}
_DEFAULTS: dict[str, dict[str, Any]] = {
    "deeplabv3_mobilenet_v3_large": {**_DEEPLAB, "output_stride": 16, "reduced_tail": False},
    "deeplabv3_resnet18": dict(_DEEPLAB),
    "deeplabv3_resnet50": dict(_DEEPLAB),
    "deeplabv3_resnet101": dict(_DEEPLAB),
    "deeplabv3plus_resnet50": {**_DEEPLAB, "output_stride": 16, "decoder_channels": 256, "decoder_convs": 2},
    "deeplabv3plus_resnet101": {**_DEEPLAB, "output_stride": 16, "decoder_channels": 256, "decoder_convs": 2},
    "pspnet_resnet50": {**_COMMON, "pool_scales": (1, 2, 3, 6), "pyramid_channels": 512, "output_stride": 8},
    "pspnet_resnet101": {**_COMMON, "pool_scales": (1, 2, 3, 6), "pyramid_channels": 512, "output_stride": 8},
}

#: Architecture names accepted by :func:`build_model` (builder names without ``moose_``).
ARCHITECTURES: tuple[str, ...] = tuple(sorted(_DEFAULTS))

_OUTPUT_STRIDES = (8, 16)


def default_model_kwargs(architecture: str) -> dict[str, Any]:
    """The builder defaults of ``architecture`` (``atrous_rates`` None = chosen from the output stride)."""
    _check_architecture(architecture)
    return dict(_DEFAULTS[architecture])


def _check_architecture(architecture: str) -> None:
    if architecture not in _DEFAULTS:
        raise ConfigError(f"unknown architecture {architecture!r}; allowed: {', '.join(ARCHITECTURES)}")


def _int(where: str, name: str, value: Any, minimum: int) -> int:
    if isinstance(value, bool) or not isinstance(value, int) or value < minimum:
        raise ConfigError(f"{where}: {name} must be an integer >= {minimum}, got {value!r}")
    return value


def _probability(where: str, name: str, value: Any) -> float:
    if isinstance(value, bool) or not isinstance(value, (int, float)) or not 0.0 <= float(value) < 1.0:
        raise ConfigError(f"{where}: {name} must be a number in [0, 1), got {value!r}")
    return float(value)


def _int_tuple(where: str, name: str, value: Any) -> tuple[int, ...]:
    if isinstance(value, (str, bytes)) or not isinstance(value, Sequence) or len(value) == 0:
        raise ConfigError(f"{where}: {name} must be a non-empty sequence of integers >= 1, got {value!r}")
    return tuple(_int(where, f"{name}[{i}]", v, 1) for i, v in enumerate(value))


def _resolve(architecture: str, config: dict[str, Any]) -> dict[str, Any]:
    """Validate ``config`` (all keys of the architecture's defaults) and fill ``atrous_rates``."""
    where = f"moose_{architecture}"
    out = dict(config)
    out["num_classes"] = _int(where, "num_classes", config["num_classes"], 1)
    out["probe_width"] = _int(where, "probe_width", config["probe_width"], 1)
    out["probe_depth"] = _int(where, "probe_depth", config["probe_depth"], 0)
    out["probe_dropout"] = _probability(where, "probe_dropout", config["probe_dropout"])
    if config["output_stride"] not in _OUTPUT_STRIDES or isinstance(config["output_stride"], bool):
        raise ConfigError(f"{where}: output_stride must be one of {_OUTPUT_STRIDES}, got {config['output_stride']!r}")
    if "aspp_channels" in config:
        out["aspp_channels"] = _int(where, "aspp_channels", config["aspp_channels"], 1)
        rates = config["atrous_rates"]
        if rates is None:
            os8 = config["output_stride"] == 8
            rates = (12, 24, 36) if os8 or architecture.endswith("mobilenet_v3_large") else (6, 12, 18)
        out["atrous_rates"] = _int_tuple(where, "atrous_rates", rates)
    if "decoder_channels" in config:
        out["decoder_channels"] = _int(where, "decoder_channels", config["decoder_channels"], 1)
        out["decoder_convs"] = _int(where, "decoder_convs", config["decoder_convs"], 1)
    if "reduced_tail" in config and not isinstance(config["reduced_tail"], bool):
        raise ConfigError(f"{where}: reduced_tail must be True or False, got {config['reduced_tail']!r}")
    if "pool_scales" in config:
        out["pool_scales"] = _int_tuple(where, "pool_scales", config["pool_scales"])
        out["pyramid_channels"] = _int(where, "pyramid_channels", config["pyramid_channels"], 1)
    return out


def _assemble(architecture: str, c: dict[str, Any]) -> MooseSegmentationModel:
    probe = {"num_classes": c["num_classes"], "probe_width": c["probe_width"], "probe_depth": c["probe_depth"],
             "probe_dropout": c["probe_dropout"]}
    family, _, trunk = architecture.partition("_")
    if trunk == "mobilenet_v3_large":
        backbone, channels = mobilenet_v3_large_backbone(output_stride=c["output_stride"],
                                                         reduced_tail=c["reduced_tail"])
    else:
        depth = int(trunk.removeprefix("resnet"))
        backbone, channels = resnet_backbone(depth, output_stride=c["output_stride"],
                                             low_level=family == "deeplabv3plus")
    if family == "deeplabv3":
        head = deeplab_head(channels["out"], c["num_classes"], c["atrous_rates"], c["aspp_channels"])
        return MooseDeepLabV3(backbone, head, **probe)
    if family == "deeplabv3plus":
        aspp = ASPP(channels["out"], list(c["atrous_rates"]), out_channels=c["aspp_channels"])
        return MooseDeepLabV3Plus(backbone, channels["low_level"], aspp, decoder_channels=c["decoder_channels"],
                                  decoder_convs=c["decoder_convs"], **probe)
    return MoosePSPNet(backbone, channels["out"], c["pool_scales"], c["pyramid_channels"], **probe)


def _same(a: Any, b: Any) -> bool:
    return json.loads(json.dumps(a)) == json.loads(json.dumps(b))


def build_from_loaded(
    architecture: str,
    user_kwargs: dict[str, Any],
    state_dict: dict[str, torch.Tensor] | None,
    meta: CheckpointMeta | None,
    *,
    source: str = "<checkpoint>",
    freeze_trunk: bool = False,
) -> MooseSegmentationModel:
    """Build ``architecture`` from user arguments, optionally checked against and loaded from a checkpoint.

    Args:
        architecture: one of :data:`ARCHITECTURES`.
        user_kwargs: builder arguments; ``None`` values count as "not given".
        state_dict, meta: a checkpoint's content (both or neither).
        source: names the checkpoint in error messages.
        freeze_trunk: call ``train_probes_only()`` on the result.

    Raises:
        ConfigError: unknown architecture or argument, invalid value.
        CheckpointError: an argument or the architecture contradicts ``meta``, or the weights do not fit.
    """
    _check_architecture(architecture)
    defaults = _DEFAULTS[architecture]
    unknown = sorted(set(user_kwargs) - set(defaults))
    if unknown:
        raise ConfigError(f"moose_{architecture}: unknown argument(s) {unknown}; allowed: "
                          f"{sorted([*defaults, 'checkpoint', 'freeze_trunk'])}")
    given = {k: v for k, v in user_kwargs.items() if v is not None}
    config = dict(defaults)
    if meta is not None:
        if meta.architecture != architecture:
            raise CheckpointError(
                f"{source}: checkpoint is a {meta.architecture!r}, but {architecture!r} was asked for"
            )
        stray = sorted(set(meta.model_kwargs) - set(defaults))
        if stray:
            raise CheckpointError(
                f"{source}: checkpoint model_kwargs {stray} are not arguments of moose_{architecture}"
            )
        for key, value in given.items():
            if key in meta.model_kwargs and key not in _TRAINING_ONLY and not _same(value, meta.model_kwargs[key]):
                raise CheckpointError(f"{source}: argument {key}={value!r} contradicts the checkpoint's "
                                      f"{key}={meta.model_kwargs[key]!r}")
        config.update(meta.model_kwargs)
    config.update(given)  # given training-only values (probe_dropout) win over the checkpoint's
    config = _resolve(architecture, config)
    model = _assemble(architecture, config)
    model.architecture = architecture
    model.model_kwargs = json.loads(json.dumps(config))
    model.checkpoint_meta = meta
    if state_dict is not None:
        try:
            model.load_state_dict(state_dict, strict=True)
        except RuntimeError as err:
            raise CheckpointError(f"{source}: weights do not fit moose_{architecture}{config}: {err}") from err
    model.eval()
    if freeze_trunk:
        model.train_probes_only()
    return model


def _build(
    architecture: str, kwargs: dict[str, Any], checkpoint: PathLike | None, freeze_trunk: bool
) -> MooseSegmentationModel:
    if checkpoint is None:
        return build_from_loaded(architecture, kwargs, None, None, freeze_trunk=freeze_trunk)
    state, meta = read_checkpoint(checkpoint)
    return build_from_loaded(architecture, kwargs, state, meta, source=str(checkpoint), freeze_trunk=freeze_trunk)


def build_model(architecture: str, **kwargs: Any) -> MooseSegmentationModel:
    """Build a MOoSe network by name (:data:`ARCHITECTURES`); ``kwargs`` are the builder's arguments.

    Example: ``build_model("deeplabv3_resnet50", num_classes=19, checkpoint="model.pt")``.
    """
    _check_architecture(architecture)
    checkpoint = kwargs.pop("checkpoint", None)
    freeze_trunk = kwargs.pop("freeze_trunk", False)
    return _build(architecture, kwargs, checkpoint, bool(freeze_trunk))


_ARGS_DOC = """
Common arguments (``None`` = the checkpoint's value, else the default):
    num_classes: C (default 19, the Cityscapes train ids).
    probe_width: hidden channels of every probe (default 256).
    probe_depth: 3x3 conv + BN + ReLU blocks per probe, >= 0 (default 1).
    probe_dropout: dropout probability after each probe's projection, [0, 1) (default 0.5; training only, a
        checkpoint may be rebuilt with another value).
    output_stride: 8 or 16; the features are H/OS x W/OS.
    freeze_trunk: start with ``train_probes_only()`` (default False).
    checkpoint: a file from :func:`~moose_ros.model.checkpoint.save_checkpoint`; its meta supplies every
        argument left at None and must agree with every argument given.
DeepLab arguments:
    aspp_channels: ASPP width A (default 256 = torchvision's, needed to import torchvision weights).
    atrous_rates: rates of the atrous branches, K = 1 + len(atrous_rates) probes (default (12, 24, 36) at
        output stride 8 and for MobileNetV3 as torchvision; (6, 12, 18) for ResNets at output stride 16).
Returns the model in eval mode. ``model(x)`` gives ``{"out": [N, C, h, w], "probes": [K x [N, C, h, w]]}``.
"""

#: Type of each builder argument, for the generated signatures.
_ANNOTATIONS = {
    "num_classes": "int | None", "probe_width": "int | None", "probe_depth": "int | None",
    "probe_dropout": "float | None", "aspp_channels": "int | None", "atrous_rates": "Sequence[int] | None",
    "output_stride": "int | None", "reduced_tail": "bool | None", "decoder_channels": "int | None",
    "decoder_convs": "int | None", "pool_scales": "Sequence[int] | None", "pyramid_channels": "int | None",
}


def _builder(architecture: str, summary: str) -> Callable[..., MooseSegmentationModel]:
    """The public keyword-only builder ``moose_<architecture>``: its arguments are the architecture's defaults
    (:data:`_DEFAULTS`, all ``None`` = the checkpoint's value or the default) plus ``freeze_trunk`` and
    ``checkpoint``; its signature and docstring are generated from that one table."""
    names = list(_DEFAULTS[architecture])

    def build(**kwargs: Any) -> MooseSegmentationModel:
        unknown = sorted(set(kwargs) - {*names, "freeze_trunk", "checkpoint"})
        if unknown:
            raise TypeError(f"moose_{architecture}() got unexpected keyword argument(s) {unknown}")
        checkpoint = kwargs.pop("checkpoint", None)
        freeze_trunk = bool(kwargs.pop("freeze_trunk", False))
        return _build(architecture, {name: kwargs.get(name) for name in names}, checkpoint, freeze_trunk)

    keyword = inspect.Parameter.KEYWORD_ONLY
    params = [inspect.Parameter(name, keyword, default=None, annotation=_ANNOTATIONS[name]) for name in names]
    params += [inspect.Parameter("freeze_trunk", keyword, default=False, annotation="bool"),
               inspect.Parameter("checkpoint", keyword, default=None, annotation="PathLike | None")]
    build.__name__ = build.__qualname__ = f"moose_{architecture}"
    build.__signature__ = inspect.Signature(params, return_annotation="MooseSegmentationModel")  # type: ignore[attr-defined]
    build.__doc__ = summary + "\n" + _ARGS_DOC
    return build


moose_deeplabv3_resnet18 = _builder(
    "deeplabv3_resnet18", "DeepLabV3 with a dilated ResNet-18 (default output stride 8, 512-channel features), K = 4 "
    "probes.")
moose_deeplabv3_resnet50 = _builder(
    "deeplabv3_resnet50", "DeepLabV3 with a dilated ResNet-50 (default output stride 8), K = 4 probes; the trunk has "
    "torchvision's ``deeplabv3_resnet50`` parameter names (with ``aspp_channels=256``).")
moose_deeplabv3_resnet101 = _builder(
    "deeplabv3_resnet101", "DeepLabV3 with a dilated ResNet-101 (default output stride 8), K = 4 probes "
    "(torchvision names).")
moose_deeplabv3_mobilenet_v3_large = _builder(
    "deeplabv3_mobilenet_v3_large", "DeepLabV3 with MobileNetV3-Large (default output stride 16 as torchvision; 8 "
    "dilates one more stage). ``reduced_tail`` (default False) halves the last stage (480 feature channels). The "
    "light configuration for CPU training: ``reduced_tail=True, output_stride=8, aspp_channels=128, "
    "atrous_rates=(4, 8, 12)`` at a 256x512 input (32x64 features); convert with "
    "``model.to(memory_format=torch.channels_last)`` for speed. With the defaults the trunk has torchvision's "
    "``deeplabv3_mobilenet_v3_large`` parameter names.")
moose_deeplabv3plus_resnet50 = _builder(
    "deeplabv3plus_resnet50", "DeepLabV3+ with ResNet-50 (default output stride 16), outputs at stride 4, K = 4 "
    "probes. ``decoder_channels`` (default 256) is the width of the decoder's 3x3 convs, ``decoder_convs`` "
    "(default 2) their number; ``decoder_convs=1`` is the decoder of VainF's DeepLabV3Plus-Pytorch and of the "
    "MOoSe authors' release.")
moose_deeplabv3plus_resnet101 = _builder(
    "deeplabv3plus_resnet101", "DeepLabV3+ with ResNet-101 (default output stride 16), outputs at stride 4, K = 4 "
    "probes; ``decoder_channels`` / ``decoder_convs`` as for ResNet-50.")
moose_pspnet_resnet50 = _builder(
    "pspnet_resnet50", "PSPNet with a dilated ResNet-50 (default output stride 8), one probe per pool scale. "
    "``pool_scales`` default (1, 2, 3, 6) (K = 4); ``pyramid_channels`` default 512 per level.")
moose_pspnet_resnet101 = _builder(
    "pspnet_resnet101", "PSPNet with a dilated ResNet-101 (default output stride 8), one probe per pool scale (K = 4).")


def load_checkpoint(
    path: str | os.PathLike[str], map_location: Any = "cpu", *, freeze_trunk: bool = False
) -> tuple[MooseSegmentationModel, CheckpointMeta]:
    """Rebuild the network a checkpoint describes and load its weights (strictly).

    Args:
        path: file written by :func:`save_checkpoint`.
        map_location: as ``torch.load``; a device string or ``torch.device`` also moves the model there.
        freeze_trunk: call ``train_probes_only()`` on the result.

    Returns:
        ``(model, meta)``; the model is in eval mode and carries ``model.checkpoint_meta = meta``.
    """
    state, meta = read_checkpoint(path, map_location)
    model = build_from_loaded(meta.architecture, {}, state, meta, source=str(path), freeze_trunk=freeze_trunk)
    if isinstance(map_location, (str, torch.device)):
        model.to(map_location)
    return model, meta
