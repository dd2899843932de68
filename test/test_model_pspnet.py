"""PSPNet's pyramid pooling: same bins as adaptive_avg_pool2d, and ONNX-exportable with dynamic sizes."""

from __future__ import annotations

import io
import warnings

import numpy as np
import onnxruntime as ort
import pytest
import torch
import torch.nn.functional as F

from moose_ros.model.pspnet import AdaptiveAvgPool2dMatmul, PyramidPooling


@pytest.mark.parametrize("size", [(8, 16), (9, 13), (5, 7), (3, 2), (1, 1)])
def test_matmul_pooling_equals_adaptive_avg_pool(size: tuple[int, int]) -> None:
    x = torch.randn(2, 3, *size, generator=torch.Generator().manual_seed(0))
    for scale in (1, 2, 3, 6):
        pooled = AdaptiveAvgPool2dMatmul(scale)(x)
        expected = F.adaptive_avg_pool2d(x, scale)
        assert pooled.shape == expected.shape == (2, 3, scale, scale)
        torch.testing.assert_close(pooled, expected, rtol=1e-5, atol=1e-6)


def test_pyramid_pooling_exports_with_dynamic_size() -> None:
    torch.manual_seed(0)
    pyramid = PyramidPooling(8, (1, 2, 3, 6), 4).eval()

    class Concat(torch.nn.Module):
        def __init__(self) -> None:
            super().__init__()
            self.pyramid = pyramid

        def forward(self, x: torch.Tensor) -> torch.Tensor:
            return torch.cat(self.pyramid(x), dim=1)

    buffer = io.BytesIO()
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        torch.onnx.export(Concat().eval(), (torch.randn(1, 8, 8, 16),), buffer, opset_version=17, dynamo=False,
                          input_names=["x"], output_names=["y"], dynamic_axes={"x": {0: "n", 2: "h", 3: "w"}})
    session = ort.InferenceSession(buffer.getvalue(), providers=["CPUExecutionProvider"])
    for shape in [(1, 8, 8, 16), (2, 8, 9, 13), (1, 8, 4, 5)]:
        x = torch.randn(*shape)
        (got,) = session.run(None, {"x": x.numpy()})
        with torch.no_grad():
            expected = Concat()(x).numpy()
        assert got.shape == expected.shape == (shape[0], 16, shape[2], shape[3])
        np.testing.assert_allclose(got, expected, rtol=1e-4, atol=1e-5)
