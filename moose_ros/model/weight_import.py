"""Other people's DeepLab / PSPNet weights -> a moose_ros checkpoint (``moose import``).

:func:`import_weights` reads a ``torch.save`` file with ``weights_only=True``, detects its format and architecture
from the key names and shapes (:mod:`moose_ros.model.weight_layouts`), renames every tensor to this package's
module tree, reorders the input channels of the convolutions that read a concatenation in another order than ours,
loads the result strictly into the matching network and writes a self-describing checkpoint. Probes come with the
MOoSe authors' release; other sources get fresh probes (seeded, untrained) for ``moose train --stage probes``.

What weights cannot tell comes from arguments with per-format defaults (:data:`FORMAT_DEFAULTS`): the output stride
(with it the atrous rates: 12/24/36 at 8, 6/12/18 at 16; an ``os8`` / ``os16`` in the file name, as VainF names its
files, wins over the format's default) and the input normalisation. Class names come from
``classes`` or, when omitted, from the class count (19: Cityscapes, 13: the release's StreetHazards list).
"""

from __future__ import annotations

import hashlib
import os
import re
from collections.abc import Mapping
from pathlib import Path
from typing import Any, NamedTuple

import torch

from moose_ros.data.class_lists import ClassList, class_list_for_count, read_class_list
from moose_ros.errors import CheckpointError, ConfigError
from moose_ros.model.builders import ARCHITECTURES, build_model, default_model_kwargs
from moose_ros.model.checkpoint import (
    CHECKPOINT_FORMAT,
    CheckpointMeta,
    load_torch_file,
    save_checkpoint,
)
from moose_ros.model.weight_layouts import (
    FORMATS,
    SOURCE_PROBES,
    Layout,
    detect_family,
    detect_format,
    detect_trunk,
    layout_for,
    release_probe_depth,
    release_probe_paths,
    reorder_input_channels,
)
from moose_ros.normalization import IDENTITY_MEAN, IDENTITY_STD, IMAGENET_MEAN, IMAGENET_STD

__all__ = ["FORMATS", "FORMAT_DEFAULTS", "NORMALIZATIONS", "ImportResult", "import_weights", "read_source"]

#: ``--normalize`` name -> (mean, std) of images scaled to [0, 1].
NORMALIZATIONS: dict[str, tuple[tuple[float, ...], tuple[float, ...]]] = {
    "imagenet": (IMAGENET_MEAN, IMAGENET_STD),
    "none": (IDENTITY_MEAN, IDENTITY_STD),
}
#: (format, family) -> (output stride, normalisation) used when not given: what each source's own code runs.
#: The release: DeepLabV3 and PSPNet at stride 8, DeepLabV3+ at 16; its eval.py scales StreetHazards images to
#: [0, 1] only (13-class models: "none") and normalises with ImageNet statistics otherwise. VainF's Cityscapes
#: models: stride 16. torchvision: stride 8 (ResNets) and 16 (MobileNetV3-Large); every non-release model: imagenet.
FORMAT_DEFAULTS: dict[tuple[str, str], int] = {
    ("moose-eccv2022", "deeplabv3"): 8, ("moose-eccv2022", "deeplabv3plus"): 16, ("moose-eccv2022", "pspnet"): 8,
    ("vainf", "deeplabv3"): 16, ("vainf", "deeplabv3plus"): 16, ("torchvision", "deeplabv3"): 8,
}
_WRAPPERS = ("model_state_dict", "model_state", "state_dict")
#: An output stride in a file name (VainF: ``best_deeplabv3plus_resnet101_cityscapes_os16.pth``).
_OS_IN_NAME = re.compile(r"(?:^|[_.\-])os(8|16)(?=[_.\-]|$)")
#: Seed of the fresh probes' initialisation (the same source gives the same checkpoint).
FRESH_PROBE_SEED = 0


class ImportResult(NamedTuple):
    """What :func:`import_weights` wrote and decided.

    Attributes:
        path: the checkpoint written.
        format, architecture: detected (or given) source format and our architecture name.
        classes: the class list used.
        output_stride, normalize: the values used (given or the format's default).
        probes_imported: True when the source's probes were loaded, False for fresh (untrained) probes.
        lines: one human-readable line per decision (detected / default / ignored), for the command line.
    """

    path: Path
    format: str
    architecture: str
    classes: ClassList
    output_stride: int
    normalize: str
    probes_imported: bool
    lines: tuple[str, ...]


def read_source(path: str | os.PathLike[str]) -> tuple[dict[str, torch.Tensor], str]:
    """The state dict inside ``path`` (``module.`` prefix stripped) and a description of its wrapper.

    Raises:
        CheckpointError: unreadable file, pickled code, a moose_ros checkpoint, or no state dict inside.
    """
    payload = load_torch_file(path)
    if isinstance(payload, dict) and payload.get("format") == CHECKPOINT_FORMAT:
        raise CheckpointError(f"{path}: already a moose_ros checkpoint; use it as it is (moose export / train --init)")
    if not isinstance(payload, dict):
        raise CheckpointError(f"{path}: holds a {type(payload).__name__}, not a state dict")
    wrapper = next((key for key in _WRAPPERS if isinstance(payload.get(key), dict)), None)
    state = payload[wrapper] if wrapper is not None else payload
    described = f"'{wrapper}' entry" if wrapper is not None else "plain state dict"
    bad = [key for key, value in state.items() if not isinstance(key, str) or not torch.is_tensor(value)]
    if bad or not state:
        top = sorted(str(k) for k in payload)[:6]
        raise CheckpointError(f"{path}: no state dict found: expected {', '.join(map(repr, _WRAPPERS))} or a dict of "
                              f"tensors (top-level keys: {top})")
    if all(key.startswith("module.") for key in state):
        state = {key[len("module."):]: value for key, value in state.items()}
        described += ", nn.DataParallel 'module.' prefix stripped"
    return dict(state), described


def _indices(keys: Any, prefix: str) -> list[int]:
    pattern = re.compile(rf"^{re.escape(prefix)}(\d+)\.")
    return sorted({int(m.group(1)) for key in keys if (m := pattern.match(key))})


def _rename_trunk(state: Mapping[str, torch.Tensor], layout: Layout) -> tuple[dict, dict, list[str]]:
    """Trunk tensors under our names (float32), our name -> source name, and the ignored source keys."""
    target: dict[str, torch.Tensor] = {}
    origin: dict[str, str] = {}
    ignored: list[str] = []
    unknown: list[str] = []
    for key, tensor in state.items():
        if key.startswith(SOURCE_PROBES):
            continue
        if layout.ignored and key.startswith(layout.ignored):
            ignored.append(key)
            continue
        prefix = next((pair for pair in layout.renames if key.startswith(pair[0])), None)
        if prefix is None:
            unknown.append(key)
            continue
        name = prefix[1] + key[len(prefix[0]):]
        target[name] = tensor.float() if tensor.is_floating_point() else tensor
        origin[name] = key
    if unknown:
        raise CheckpointError(f"{len(unknown)} key(s) fit no module of the {layout.format} {layout.family} layout, "
                              f"e.g. {sorted(unknown)[:3]}")
    return target, origin, ignored


def _rename_probes(state: Mapping[str, torch.Tensor], family: str, num_probes: int,
                   target: dict, origin: dict, ignored: list[str]) -> int:
    """Add the release's probes 0..num_probes-1 to ``target``; returns our probe depth."""
    depth = release_probe_depth(state, family)
    paths = release_probe_paths(family, depth)
    unknown = []
    for key, tensor in state.items():
        if not key.startswith(SOURCE_PROBES):
            continue
        index, _, rest = key[len(SOURCE_PROBES):].partition(".")
        module, _, param = rest.rpartition(".")
        if not index.isdigit() or module not in paths:
            unknown.append(key)
        elif int(index) >= num_probes:
            ignored.append(key)  # the DeepLabV3+ release builds a fifth probe that its forward never runs
        else:
            name = f"probes.{index}.{paths[module]}.{param}"
            target[name] = tensor.float() if tensor.is_floating_point() else tensor
            origin[name] = key
    if unknown:
        raise CheckpointError(f"{len(unknown)} probe key(s) fit no layer of a depth-{depth} release probe, "
                              f"e.g. {sorted(unknown)[:3]}")
    return depth - 1 if family == "pspnet" else depth


def _shape(target: Mapping[str, torch.Tensor], key: str, dim: int) -> int:
    if key not in target:
        raise CheckpointError(f"the file lacks the tensor that becomes {key!r}")
    return int(target[key].shape[dim])


def _structure(family: str, target: Mapping[str, torch.Tensor]) -> tuple[dict[str, Any], int, str]:
    """Builder arguments read off the shapes, the number of probes K, and the global head's last conv key."""
    if family == "pspnet":
        stages = _indices(target, "pyramid.stages.")
        kwargs = {"pyramid_channels": _shape(target, "pyramid.stages.0.1.weight", 0)}
        if len(stages) != 4:
            raise CheckpointError(f"the PSPNet has {len(stages)} pyramid levels; only the standard 4 (pool scales "
                                  "1, 2, 3, 6) can be imported: scales are not stored in the weights")
        return kwargs, len(stages), "classifier.4.weight"
    aspp = "aspp." if family == "deeplabv3plus" else "classifier.0."
    kwargs = {"aspp_channels": _shape(target, f"{aspp}project.0.weight", 0)}
    num_probes = len(_indices(target, f"{aspp}convs.")) - 1
    if family == "deeplabv3":
        return kwargs, num_probes, "classifier.4.weight"
    convs = [i for i in _indices(target, "decoder.") if target.get(f"decoder.{i}.weight", torch.empty(0)).dim() == 4]
    kwargs.update(decoder_channels=_shape(target, "decoder.0.weight", 0), decoder_convs=len(convs) - 1)
    return kwargs, num_probes, f"decoder.{convs[-1]}.weight"


def _reorder(fmt: str, family: str, target: dict[str, torch.Tensor], num_probes: int) -> None:
    """Reorder the input channels of the convolutions that read a concatenation in the source's order."""
    if family == "deeplabv3plus":
        low = _shape(target, "low_level_project.0.weight", 0)
        width = _shape(target, "aspp.project.0.weight", 0)
        target["decoder.0.weight"] = reorder_input_channels(target["decoder.0.weight"], (low, width), (1, 0))
        groups, order = (low, width, width), (1, 2, 0)  # release probes: cat(low-level, branch, pooling)
    elif family == "pspnet":
        level = _shape(target, "pyramid.stages.0.1.weight", 0)
        groups, order = (_shape(target, "pyramid.stages.0.1.weight", 1), level), (1, 0)  # cat(features, level)
    else:
        return
    for k in range(num_probes):
        key = f"probes.{k}.project.0.weight"
        if fmt == "moose-eccv2022" and key in target:
            target[key] = reorder_input_channels(target[key], groups, order)


def _load_strict(model: torch.nn.Module, target: dict, origin: dict, where: str, hint: str) -> None:
    """Load ``target`` into ``model``; probes only when the source had them. Errors name keys and both shapes."""
    own = model.state_dict()
    unexpected = sorted(k for k in target if k not in own)
    if unexpected:
        raise CheckpointError(f"{where}: {len(unexpected)} tensor(s) of the file have no place in it, e.g. "
                              f"{origin[unexpected[0]]!r} (as {unexpected[0]!r}){hint}")
    with_probes = any(k.startswith("probes.") for k in target)
    missing = [k for k in own if k not in target and not k.endswith("num_batches_tracked")
               and (with_probes or not k.startswith("probes."))]
    if missing:
        raise CheckpointError(f"{where}: the file lacks {len(missing)} tensor(s) it needs, e.g. {missing[0]!r}{hint}")
    for key, tensor in target.items():
        if tuple(tensor.shape) != tuple(own[key].shape):
            raise CheckpointError(f"{where}: {origin[key]!r} has shape {tuple(tensor.shape)} in the file, "
                                  f"{key!r} needs {tuple(own[key].shape)}{hint}")
    own.update(target)
    model.load_state_dict(own, strict=True)


def _classes(spec: str | None, count: int, last_conv: str) -> tuple[ClassList, str]:
    if spec is not None:
        return read_class_list(spec), "--classes"
    known = class_list_for_count(count)
    if known is None:
        raise ConfigError(f"the weights have {count} classes ({last_conv}); name them with --classes FILE "
                          "(one name per line)")
    return known, f"from the {count} outputs of {last_conv}"


def _sha256(path: Path) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as handle:
        for block in iter(lambda: handle.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def import_weights(
    src: str | os.PathLike[str],
    dst: str | os.PathLike[str],
    *,
    fmt: str = "auto",
    arch: str | None = None,
    classes: str | None = None,
    normalize: str | None = None,
    output_stride: int | None = None,
) -> ImportResult:
    """Convert ``src`` (see the module docstring) into the moose_ros checkpoint ``dst`` (written atomically).

    Args:
        fmt: ``"auto"`` or one of :data:`FORMATS` (checked against the keys).
        arch: our architecture name (default: detected); the weights must fit it.
        classes: ``"cityscapes"``, ``"streethazards"`` or a class-list file (default: by the class count).
        normalize: ``"imagenet"`` or ``"none"`` (default: the format's, see :data:`FORMAT_DEFAULTS`).
        output_stride: 8 or 16 (default: the format's).

    Raises:
        CheckpointError: unreadable or unsafe file, unknown layout, or weights that do not fit (key and shapes named).
        ConfigError: an argument outside its allowed values, or one that contradicts the file.
    """
    src, dst = Path(src), Path(dst)
    if fmt != "auto" and fmt not in FORMATS:
        raise ConfigError(f"--format {fmt}: allowed values: auto, {', '.join(FORMATS)}")
    if normalize is not None and normalize not in NORMALIZATIONS:
        raise ConfigError(f"--normalize {normalize}: allowed values: {', '.join(NORMALIZATIONS)}")
    if output_stride is not None and output_stride not in (8, 16):
        raise ConfigError(f"--output-stride {output_stride}: allowed values: 8, 16")
    if arch is not None and arch not in ARCHITECTURES:
        raise ConfigError(f"--arch {arch}: allowed values: {', '.join(ARCHITECTURES)}")
    state, wrapper = read_source(src)
    try:
        return _convert(src, dst, state, wrapper, fmt, arch, classes, normalize, output_stride)
    except CheckpointError as err:
        text = str(err)
        raise CheckpointError(text if text.startswith(str(src)) else f"{src}: {text}") from err


def _convert(src: Path, dst: Path, state: dict, wrapper: str, fmt: str, arch: str | None, classes: str | None,
             normalize: str | None, output_stride: int | None) -> ImportResult:
    family, family_key = detect_family(state)
    detected_fmt, format_key = detect_format(state, family)
    if fmt not in ("auto", detected_fmt):
        raise ConfigError(f"--format {fmt}: {src} is in the {detected_fmt} layout (key {format_key!r})")
    trunk, trunk_evidence = detect_trunk(state)
    detected_arch = f"{family}_{trunk}"
    if arch is None and detected_arch not in ARCHITECTURES:
        raise CheckpointError(f"{detected_arch} ({trunk_evidence}) is not an architecture of this package; "
                              f"supported: {', '.join(ARCHITECTURES)}")
    architecture = arch or detected_arch
    layout = layout_for(detected_fmt, family)
    target, origin, ignored = _rename_trunk(state, layout)
    kwargs, num_probes, last_conv = _structure(family, target)
    has_probes = detected_fmt == "moose-eccv2022"
    if has_probes:
        kwargs["probe_depth"] = _rename_probes(state, family, num_probes, target, origin, ignored)
        kwargs["probe_width"] = _shape(target, "probes.0.project.0.weight", 0)
    _reorder(detected_fmt, family, target, num_probes)
    count = _shape(target, last_conv, 0)
    class_list, class_source = _classes(classes, count, origin.get(last_conv, last_conv))
    default_os, os_source = _default_stride(src, detected_fmt, family, trunk)
    stride = output_stride or default_os
    default_norm = "none" if detected_fmt == "moose-eccv2022" and count == 13 else "imagenet"
    norm = normalize or default_norm
    if trunk == "mobilenet_v3_large":
        kwargs["reduced_tail"] = _shape(target, "backbone.16.0.weight", 0) == 480
    kwargs.update(num_classes=len(class_list.classes), output_stride=stride)
    torch.manual_seed(FRESH_PROBE_SEED)
    model = build_model(architecture, **{k: v for k, v in kwargs.items() if _accepts(architecture, k)})
    where = f"moose_{architecture} with {len(class_list.classes)} classes ({class_list.name})"
    hint = "" if architecture == detected_arch else f"; the weights look like {detected_arch} ({trunk_evidence})"
    _load_strict(model, target, origin, where, hint)
    mean, std = NORMALIZATIONS[norm]
    lines = (
        f"format: {detected_fmt} ({'detected' if fmt == 'auto' else 'given'}; key {format_key!r}; {wrapper})",
        f"architecture: {architecture} ({'given' if arch else 'detected'}: {family} from {family_key!r}, "
        f"{trunk_evidence})",
        f"classes: {len(class_list.classes)} = {class_list.name} ({class_source}): {', '.join(class_list.classes)}",
        f"output stride: {stride} ({'--output-stride' if output_stride else os_source}); "
        f"atrous rates {'/'.join(map(str, model.model_kwargs.get('atrous_rates') or ())) or 'n/a'}",
        f"normalisation: {norm} (mean {mean}, std {std}; {'--normalize' if normalize else 'default'})",
        (f"probes: {model.num_probes} imported (width {kwargs['probe_width']}, depth {kwargs['probe_depth']})"
         if has_probes else f"probes: {model.num_probes} fresh, untrained: train them with "
         f"`moose train --stage probes --init {dst}`"),
        *([f"ignored: {len(ignored)} tensor(s) with no counterpart, e.g. {sorted(ignored)[0]}"] if ignored else []),
    )
    meta = CheckpointMeta.for_model(
        model, classes=class_list.classes, colors=class_list.colors, mean=mean, std=std,
        probe_config={"trained": has_probes, "source": "imported" if has_probes else "fresh"},
        recipe={"import": {"format": detected_fmt, "file": src.name, "sha256": _sha256(src), "detected": detected_arch,
                           "classes": class_list.name, "normalize": norm, "ignored_keys": sorted(ignored)}},
    )
    try:
        path = save_checkpoint(dst, model, meta)
    except OSError as err:
        raise ConfigError(f"-o {dst}: cannot write the checkpoint: {err.strerror or err}") from err
    return ImportResult(path, detected_fmt, architecture, class_list, stride, norm, has_probes, lines)


def _default_stride(src: Path, fmt: str, family: str, trunk: str) -> tuple[int, str]:
    """The output stride used without ``--output-stride`` and where it comes from (format, trunk, file name)."""
    named = _OS_IN_NAME.search(src.name.lower())
    if named is not None:  # VainF names its files ..._os16.pth
        return int(named.group(1)), f"from the file name {src.name!r}"
    return (16 if trunk == "mobilenet_v3_large" else FORMAT_DEFAULTS[(fmt, family)]), f"default of {fmt}"


def _accepts(architecture: str, name: str) -> bool:
    return name in default_model_kwargs(architecture)
