"""State dicts in other projects' exact key layouts, with generated weights, and a reference forward over them.

Written from the published facts of each layout, independently of moose_ros.model: key names and shapes of the
MOoSe authors' release (silviogalesso/moose_eccv2022: DeepLabV3, DeepLabV3+ and PSPNet with probes), of VainF's
DeepLabV3Plus-Pytorch and of torchvision's DeepLabV3. :func:`reference_heads` runs such a state dict with plain
``torch.nn.functional`` calls, addressing every tensor by its source name, so a parity test compares moose_ros'
import and graph against an implementation that shares no code with it.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F

Shapes = dict[str, tuple[int, ...]]
BLOCKS = {50: (3, 4, 6, 3), 101: (3, 4, 23, 3)}
LOW, ASPP, PROBE = 48, 256, 256


def _bn(shapes: Shapes, prefix: str, channels: int) -> None:
    for name in ("weight", "bias", "running_mean", "running_var"):
        shapes[f"{prefix}.{name}"] = (channels,)
    shapes[f"{prefix}.num_batches_tracked"] = ()


def _conv_bn(shapes: Shapes, conv: str, bn: str, cout: int, cin: int, k: int) -> None:
    shapes[f"{conv}.weight"] = (cout, cin, k, k)
    _bn(shapes, bn, cout)


def resnet_shapes(depth: int) -> Shapes:
    """torchvision ResNet-50/101 names under ``backbone.`` (IntermediateLayerGetter drops avgpool and fc)."""
    shapes: Shapes = {}
    _conv_bn(shapes, "backbone.conv1", "backbone.bn1", 64, 3, 7)
    inplanes = 64
    for layer, (count, planes) in enumerate(zip(BLOCKS[depth], (64, 128, 256, 512), strict=True), start=1):
        for block in range(count):
            p = f"backbone.layer{layer}.{block}"
            _conv_bn(shapes, f"{p}.conv1", f"{p}.bn1", planes, inplanes, 1)
            _conv_bn(shapes, f"{p}.conv2", f"{p}.bn2", planes, planes, 3)
            _conv_bn(shapes, f"{p}.conv3", f"{p}.bn3", planes * 4, planes, 1)
            if block == 0:
                _conv_bn(shapes, f"{p}.downsample.0", f"{p}.downsample.1", planes * 4, inplanes, 1)
            inplanes = planes * 4
    return shapes


def _aspp_shapes(shapes: Shapes, prefix: str) -> None:
    _conv_bn(shapes, f"{prefix}.convs.0.0", f"{prefix}.convs.0.1", ASPP, 2048, 1)
    for i in (1, 2, 3):
        _conv_bn(shapes, f"{prefix}.convs.{i}.0", f"{prefix}.convs.{i}.1", ASPP, 2048, 3)
    _conv_bn(shapes, f"{prefix}.convs.4.1", f"{prefix}.convs.4.2", ASPP, 2048, 1)
    _conv_bn(shapes, f"{prefix}.project.0", f"{prefix}.project.1", ASPP, 5 * ASPP, 1)


def _release_probe(shapes: Shapes, prefix: str, cin: int, classes: int) -> None:
    """The release's DeepLab probe, depth 1: project (1x1 + BN + ReLU + Dropout), predict (3x3 + BN + ReLU, 1x1)."""
    _conv_bn(shapes, f"{prefix}.project.0", f"{prefix}.project.1", PROBE, cin, 1)
    _conv_bn(shapes, f"{prefix}.predict.0", f"{prefix}.predict.1", PROBE, PROBE, 3)
    shapes[f"{prefix}.predict.3.weight"] = (classes, PROBE, 1, 1)
    shapes[f"{prefix}.predict.3.bias"] = (classes,)


def layout_shapes(layout: str, depth: int, classes: int) -> Shapes:
    """Key -> shape of ``layout``: release_v3, release_v3plus, release_psp, vainf_v3, vainf_v3plus, torchvision."""
    shapes = resnet_shapes(depth)
    if layout in ("release_v3", "torchvision", "vainf_v3"):
        head = "classifier.classifier" if layout == "vainf_v3" else "classifier"
        _aspp_shapes(shapes, f"{head}.0")
        _conv_bn(shapes, f"{head}.1", f"{head}.2", ASPP, ASPP, 3)
        shapes[f"{head}.4.weight"], shapes[f"{head}.4.bias"] = (classes, ASPP, 1, 1), (classes,)
        if layout == "release_v3":
            for k in range(4):
                _release_probe(shapes, f"classifier.probes.{k}", 2 * ASPP, classes)
        if layout == "torchvision":  # the auxiliary FCN head on layer3 (ignored by the import)
            _conv_bn(shapes, "aux_classifier.0", "aux_classifier.1", 256, 1024, 3)
            shapes["aux_classifier.4.weight"], shapes["aux_classifier.4.bias"] = (classes, 256, 1, 1), (classes,)
    elif layout in ("release_v3plus", "vainf_v3plus"):
        _conv_bn(shapes, "classifier.project.0", "classifier.project.1", LOW, 256, 1)
        _aspp_shapes(shapes, "classifier.aspp")
        _conv_bn(shapes, "classifier.classifier.0", "classifier.classifier.1", 256, LOW + ASPP, 3)
        shapes["classifier.classifier.3.weight"] = (classes, 256, 1, 1)
        shapes["classifier.classifier.3.bias"] = (classes,)
        if layout == "release_v3plus":  # five probes are built, the forward runs the first four
            for k in range(5):
                _release_probe(shapes, f"classifier.probes.{k}", LOW + 2 * ASPP, classes)
    elif layout == "release_psp":
        for k in range(4):
            _conv_bn(shapes, f"classifier.ppm.{k}.1", f"classifier.ppm.{k}.2", 512, 2048, 1)
        _conv_bn(shapes, "classifier.conv_last.0", "classifier.conv_last.1", 512, 2048 + 4 * 512, 3)
        shapes["classifier.conv_last.4.weight"] = (classes, 512, 1, 1)
        shapes["classifier.conv_last.4.bias"] = (classes,)
        for k in range(4):  # SimpleProbeProjection, depth 1: 1x1 + BN + ReLU + Dropout2d, 1x1
            _conv_bn(shapes, f"classifier.probes.{k}.0", f"classifier.probes.{k}.1", 512, 2048 + 512, 1)
            shapes[f"classifier.probes.{k}.4.weight"] = (classes, 512, 1, 1)
            shapes[f"classifier.probes.{k}.4.bias"] = (classes,)
    else:
        raise ValueError(layout)
    return shapes


def generate(shapes: Shapes, seed: int) -> dict[str, torch.Tensor]:
    """Random weights and BatchNorm statistics (not zeros, not ones) that keep activations finite through a ResNet.

    Residual-branch BN scales (``bn3``) are small so that 33 blocks do not blow the activations up; the class
    convs get a larger scale so that the logits spread over several units.
    """
    gen = torch.Generator().manual_seed(seed)
    state: dict[str, torch.Tensor] = {}
    for key, shape in shapes.items():
        name = key.rsplit(".", 1)[-1]
        if name == "num_batches_tracked":
            state[key] = torch.tensor(1000 + len(state), dtype=torch.int64)
        elif name == "running_mean":
            state[key] = 0.1 * torch.randn(shape, generator=gen)
        elif name == "running_var":
            state[key] = 0.5 + torch.rand(shape, generator=gen)
        elif len(shape) == 4:
            fan_in = shape[1] * shape[2] * shape[3]
            gain = 4.0 if key.replace(".weight", ".bias") in shapes else 1.0  # class convs: spread the logits
            state[key] = gain * torch.randn(shape, generator=gen) * (2.0 / fan_in) ** 0.5
        elif name == "bias":  # bias of a class conv
            state[key] = 0.1 * torch.randn(shape, generator=gen)
        elif name == "weight":  # BN scale
            small = ".bn3." in key or key.endswith("downsample.1.weight")
            state[key] = (0.2 if small else 1.0) * (0.5 + 0.5 * torch.rand(shape, generator=gen))
        else:  # BN shift
            state[key] = 0.1 * torch.randn(shape, generator=gen)
    return state


# ------------------------------------------------------------------------------------- reference forward (plain F)
def _bn_f(x: torch.Tensor, sd: dict, p: str) -> torch.Tensor:
    return F.batch_norm(x, sd[f"{p}.running_mean"], sd[f"{p}.running_var"], sd[f"{p}.weight"], sd[f"{p}.bias"],
                        training=False, eps=1e-5)


def _conv_f(x: torch.Tensor, sd: dict, p: str, stride: int = 1, pad: int = 0, dil: int = 1) -> torch.Tensor:
    return F.conv2d(x, sd[f"{p}.weight"], sd.get(f"{p}.bias"), stride=stride, padding=pad, dilation=dil)


def _cbr(x: torch.Tensor, sd: dict, conv: str, bn: str, **kw: int) -> torch.Tensor:
    return F.relu(_bn_f(_conv_f(x, sd, conv, **kw), sd, bn))


def reference_resnet(x: torch.Tensor, sd: dict, depth: int, output_stride: int) -> tuple[torch.Tensor, torch.Tensor]:
    """(layer1, layer4) of a torchvision-layout dilated ResNet (stride in the 3x3 conv, torchvision's dilation rule)."""
    x = _cbr(x, sd, "backbone.conv1", "backbone.bn1", stride=2, pad=3)
    x = F.max_pool2d(x, 3, 2, 1)
    dilate = (False, output_stride == 8, True)
    dilation, low = 1, x
    for layer, count in enumerate(BLOCKS[depth], start=1):
        stride, previous = (1 if layer == 1 else 2), dilation
        if layer > 1 and dilate[layer - 2]:
            dilation, stride = dilation * stride, 1
        for block in range(count):
            p = f"backbone.layer{layer}.{block}"
            s, d = (stride, previous) if block == 0 else (1, dilation)
            out = _cbr(x, sd, f"{p}.conv1", f"{p}.bn1")
            out = _cbr(out, sd, f"{p}.conv2", f"{p}.bn2", stride=s, pad=d, dil=d)
            out = _bn_f(_conv_f(out, sd, f"{p}.conv3"), sd, f"{p}.bn3")
            identity = x
            if block == 0:
                identity = _bn_f(_conv_f(x, sd, f"{p}.downsample.0", stride=s), sd, f"{p}.downsample.1")
            x = F.relu(out + identity)
        if layer == 1:
            low = x
    return low, x


def _aspp_f(x: torch.Tensor, sd: dict, p: str, rates: tuple[int, ...]):
    branches = [_cbr(x, sd, f"{p}.convs.0.0", f"{p}.convs.0.1")]
    for i, rate in enumerate(rates, start=1):
        branches.append(_cbr(x, sd, f"{p}.convs.{i}.0", f"{p}.convs.{i}.1", pad=rate, dil=rate))
    pooled = _cbr(x.mean(dim=(2, 3), keepdim=True), sd, f"{p}.convs.4.1", f"{p}.convs.4.2")
    pooled = pooled.expand(-1, -1, *x.shape[-2:])
    projected = _cbr(torch.cat([*branches, pooled], 1), sd, f"{p}.project.0", f"{p}.project.1")
    return projected, branches, pooled


def _release_probe_f(x: torch.Tensor, sd: dict, p: str) -> torch.Tensor:
    x = _cbr(x, sd, f"{p}.project.0", f"{p}.project.1")
    x = _cbr(x, sd, f"{p}.predict.0", f"{p}.predict.1", pad=1)
    return _conv_f(x, sd, f"{p}.predict.3")


def _up(x: torch.Tensor, size) -> torch.Tensor:
    return F.interpolate(x, size=size, mode="bilinear", align_corners=False)


def reference_heads(layout: str, sd: dict, x: torch.Tensor, depth: int, output_stride: int) -> list[torch.Tensor]:
    """[global logits, probe logits ...] at the source network's own output resolution, x normalised [N,3,H,W]."""
    rates = (12, 24, 36) if output_stride == 8 else (6, 12, 18)
    low, feats = reference_resnet(x, sd, depth, output_stride)
    if layout in ("release_v3", "torchvision", "vainf_v3"):
        head = "classifier.classifier" if layout == "vainf_v3" else "classifier"
        projected, branches, pooled = _aspp_f(feats, sd, f"{head}.0", rates)
        out = _conv_f(_cbr(projected, sd, f"{head}.1", f"{head}.2", pad=1), sd, f"{head}.4")
        if layout != "release_v3":
            return [out]
        return [out] + [_release_probe_f(torch.cat([b, pooled], 1), sd, f"classifier.probes.{k}")
                        for k, b in enumerate(branches)]
    if layout in ("release_v3plus", "vainf_v3plus"):
        low = _cbr(low, sd, "classifier.project.0", "classifier.project.1")
        size = low.shape[-2:]
        projected, branches, pooled = _aspp_f(feats, sd, "classifier.aspp", rates)
        y = _cbr(torch.cat([low, _up(projected, size)], 1), sd, "classifier.classifier.0", "classifier.classifier.1",
                 pad=1)
        out = _conv_f(y, sd, "classifier.classifier.3")
        if layout == "vainf_v3plus":
            return [out]
        return [out] + [_release_probe_f(torch.cat([low, _up(b, size), _up(pooled, size)], 1), sd,
                                         f"classifier.probes.{k}") for k, b in enumerate(branches)]
    size = feats.shape[-2:]
    levels = [_up(_cbr(F.adaptive_avg_pool2d(feats, s), sd, f"classifier.ppm.{k}.1", f"classifier.ppm.{k}.2"), size)
              for k, s in enumerate((1, 2, 3, 6))]
    y = _cbr(torch.cat([feats, *levels], 1), sd, "classifier.conv_last.0", "classifier.conv_last.1", pad=1)
    out = _conv_f(y, sd, "classifier.conv_last.4")
    probes = [_conv_f(_cbr(torch.cat([feats, lv], 1), sd, f"classifier.probes.{k}.0", f"classifier.probes.{k}.1"),
                      sd, f"classifier.probes.{k}.4") for k, lv in enumerate(levels)]
    return [out, *probes]


def reference_scores(heads: list[torch.Tensor], size) -> dict[str, torch.Tensor]:
    """MOoSe scores of ``heads`` upsampled to ``size`` (bilinear), higher = anomalous: max-logit (negative max of
    the mean logits), MSP (negative max of the mean softmax), entropy of the mean softmax; labels of the global head."""
    up = [_up(h, size) for h in heads]
    mean_logits = torch.stack(up).mean(0)
    mean_probs = torch.stack([torch.softmax(h, dim=1) for h in up]).mean(0)
    return {
        "max_logit": -mean_logits.max(dim=1).values,
        "msp": -mean_probs.max(dim=1).values,
        "entropy": -(mean_probs * torch.log(mean_probs.clamp_min(1e-12))).sum(dim=1),
        "labels": up[0].argmax(dim=1),
    }
