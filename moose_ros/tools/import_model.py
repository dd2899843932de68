"""``moose import``: the MOoSe authors' released checkpoints, VainF's and torchvision's DeepLabs -> a checkpoint.

Examples::

    moose import StreetHazards_deeplabv3_resnet50.pth -o sh_r50.pt
    moose import BDD100k_deeplabv3plus_resnet101.pth -o bdd_r101.pt
    moose import best_deeplabv3plus_resnet101_cityscapes_os16.pth -o city_r101.pt    # fresh probes, train them
    moose import tv_deeplabv3_resnet50.pth -o tv.pt --format torchvision --classes my_classes.txt

What was detected and every default that was used is printed, one line each.
"""

from __future__ import annotations

import argparse
from pathlib import Path

__all__ = ["HELP", "add_arguments", "run"]

HELP = "convert the MOoSe authors' release, VainF or torchvision DeepLab weights into a moose_ros checkpoint"

_FORMATS = ("auto", "moose-eccv2022", "vainf", "torchvision")


def add_arguments(parser: argparse.ArgumentParser) -> None:
    """Options of ``moose import``."""
    parser.add_argument("src", type=Path, metavar="SRC", help="the weights file (.pth / .pt written by torch.save)")
    parser.add_argument("-o", "--output", type=Path, required=True, metavar="DST.pt",
                        help="moose_ros checkpoint to write")
    parser.add_argument("--format", choices=_FORMATS, default="auto",
                        help="source layout (default auto: detected from the key names)")
    parser.add_argument("--arch", default=None, metavar="ARCH",
                        help="architecture, e.g. deeplabv3plus_resnet101 (default: detected from keys and shapes)")
    parser.add_argument("--classes", default=None, metavar="cityscapes|streethazards|FILE",
                        help="class names: a known list or a file, one name per line (default: by the class count, "
                        "19 cityscapes, 13 streethazards)")
    parser.add_argument("--normalize", choices=("imagenet", "none"), default=None,
                        help="input normalisation the network was trained with (default: the format's: none for the "
                        "release's 13-class StreetHazards models, imagenet otherwise)")
    parser.add_argument("--output-stride", type=int, choices=(8, 16), default=None,
                        help="the network's output stride (default: the format's: release DeepLabV3/PSPNet 8, "
                        "DeepLabV3+ 16; VainF 16; torchvision 8, MobileNetV3 16)")


def run(args: argparse.Namespace) -> int:
    """Import and print what was detected and decided."""
    from moose_ros.errors import ConfigError
    from moose_ros.outputs import check_output_file

    check_output_file(args.output, "-o")
    if not args.src.is_file():
        raise ConfigError(f"SRC {args.src}: not a file")
    if args.output.resolve() == args.src.resolve():
        raise ConfigError(f"-o {args.output}: is SRC itself; choose another file")
    from moose_ros.model.weight_import import import_weights  # torch: only once the paths are known to be usable

    result = import_weights(args.src, args.output, fmt=args.format, arch=args.arch, classes=args.classes,
                            normalize=args.normalize, output_stride=args.output_stride)
    for line in result.lines:
        print(f"  {line}")
    print(f"wrote {result.path}: {result.architecture}, {len(result.classes.classes)} classes, "
          f"output stride {result.output_stride}, normalisation {result.normalize}, "
          f"probes {'imported' if result.probes_imported else 'fresh (untrained)'}")
    if result.probes_imported:
        print(f"next: moose export {result.path} -o {result.path.with_suffix('.onnx')} --input-size native")
    else:
        print(f"next: moose train --config RECIPE.yaml --stage probes --init {result.path} --out OUT_DIR")
    return 0
