"""TensorRT fp16 layer split by name, on real exported graphs (no TensorRT needed).

The real-engine tests are in ``test_tensorrt_gpu.py``; the backend logic on TensorRT 10/11 API fakes in
``test_tensorrt_logic.py``.
"""

from __future__ import annotations


def test_head_fusion_layers_are_told_apart_from_the_network(tmp_path):
    """The fp16 build pins by layer name: check the split on the node names of real exported graphs."""
    import copy

    import onnx
    import torch
    from test_export_fused import tiny_model

    from moose_ros.backends.tensorrt import is_head_fusion_layer
    from moose_ros.export import FusedEnsemble, export_onnx

    torch.set_num_threads(2)
    model = tiny_model()
    moose, ensemble = tmp_path / "moose.onnx", tmp_path / "ensemble.onnx"
    export_onnx(model, moose, scores=("entropy",), score_resolution="full", verify=False)
    export_onnx(FusedEnsemble([model, copy.deepcopy(model)], scores=("entropy",)), ensemble, verify=False)
    for path in (moose, ensemble):
        nodes = onnx.load(str(path)).graph.node
        head = {n.op_type for n in nodes if is_head_fusion_layer(n.name)}
        network = {n.op_type for n in nodes if not is_head_fusion_layer(n.name)}
        assert not any(n.op_type == "Conv" and is_head_fusion_layer(n.name) for n in nodes), path.name
        # the scores' exp/log and the output resize are head layers (class reductions are elementwise chains)
        assert {"Exp", "Log", "Resize"} <= head, path.name
        assert "Conv" in network
    assert is_head_fusion_layer("[ONNX Layer: /Exp_3]") and not is_head_fusion_layer("/model/probes.0/Conv")
