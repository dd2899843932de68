"""``moose export`` from a real checkpoint: options, metadata taken from the checkpoint, atomic output."""

from __future__ import annotations

import argparse
import json

from test_export_fused import MEAN, STD, random_images, tiny_model

from moose_ros.backends.onnxruntime import OnnxRuntimeBackend


def test_export_cli_from_checkpoint(tmp_path, capsys):
    from moose_ros.model import CheckpointMeta, save_checkpoint
    from moose_ros.tools import export as export_tool

    def main(argv: list[str]) -> int:
        parser = argparse.ArgumentParser()
        export_tool.add_arguments(parser)
        return export_tool.run(parser.parse_args(argv[1:]))

    model = tiny_model(seed=5, num_classes=3)
    ckpt_meta = CheckpointMeta.for_model(
        model,
        classes=("road", "car", "sky"),
        colors=((128, 64, 128), (0, 0, 142), (70, 130, 180)),
        mean=MEAN,
        std=STD,
        input_size=(64, 96),
    )
    ckpt = save_checkpoint(tmp_path / "m.pt", model, ckpt_meta)
    out = tmp_path / "m.onnx"
    rc = main(
        [
            "export",
            str(ckpt),
            "-o",
            str(out),
            "--score",
            "max_logit",
            "--score",
            "msp",
            "--input-size",
            "checkpoint",
            "--score-resolution",
            "full",
        ]
    )
    assert rc == 0 and "wrote" in capsys.readouterr().out
    backend = OnnxRuntimeBackend(out)
    assert backend.meta.classes == ("road", "car", "sky") and backend.meta.colors[1] == (0, 0, 142)
    assert backend.meta.mean == MEAN and backend.meta.input_size == (64, 96) and backend.meta.scores[1] == "msp"
    assert json.loads(json.dumps(backend.meta.extra))["train_input_size"] == [64, 96]
    result = backend.infer(random_images(1, 50, 70))
    assert result.labels.shape == (1, 50, 70) and int(result.labels.max()) < 3
    assert not list(tmp_path.glob(".m.onnx.*"))  # no temporary file left behind
