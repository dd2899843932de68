"""A small, explicit fake of the documented TensorRT 10.x / 11.x Python API surface, and a fake CUDA device.

This is NOT a mock of moose_ros code: it stands in for the ``tensorrt`` module (installed into ``sys.modules`` by
the tests) so the backend's pure-Python logic can run where TensorRT and a GPU are absent. It follows the public
API: ``Builder``, ``OnnxParser`` (reads the real ONNX file for input dims and node names), ``BuilderConfig``
flags and timing caches, optimisation profiles (rejected, as TensorRT does, when they disagree with a static
dimension), ``Runtime.deserialize_cuda_engine`` (None for foreign bytes), execution contexts with
``set_input_shape`` / ``set_tensor_address`` / ``execute_async_v3``. ``major=11`` leaves out what TensorRT 11
removed (``BuilderFlag.FP16``, precision constraints, ``platform_has_fast_fp16``, ``ILayer.precision`` /
``set_output_type``, ``EXPLICIT_BATCH``). Every public attribute the backend touches is recorded in
``touched_names()``; ``test_tensorrt_bindings`` checks that this fake's names exist in the published bindings.

The fake device keeps device memory as numpy arrays behind integer addresses held through weak references, so an
engine run with the address of a freed buffer fails loudly, like a real use-after-free should.
"""

from __future__ import annotations

import contextlib
import importlib.machinery
import json
import weakref
from pathlib import Path
from typing import ClassVar

import numpy as np
import onnx
from onnx import TensorProto, helper

from moose_ros.backends.base import META_KEY, ModelMeta

ENGINE_MAGIC = b"FAKETRT1"


class _Recorder:
    touched: ClassVar[set[str]] = set()


class _ApiMeta(type):
    def __getattribute__(cls, name):
        if not name.startswith("_"):
            _Recorder.touched.add(name)
        return super().__getattribute__(name)


class _Api(metaclass=_ApiMeta):
    def __getattribute__(self, name):
        if not name.startswith("_"):
            _Recorder.touched.add(name)
        return object.__getattribute__(self, name)

    def __setattr__(self, name, value):
        if not name.startswith("_"):
            _Recorder.touched.add(name)
        object.__setattr__(self, name, value)


# ----------------------------------------------------------------------------------------------- fake CUDA device
class FakeBuffer:
    """A device buffer: a numpy array and its fake address."""

    def __init__(self, array: np.ndarray, address: int) -> None:
        self.array, self.address = array, address


class FakeCuda:
    """Process-wide fake CUDA state: the current device and the live allocations (address -> weakref)."""

    def __init__(self) -> None:
        self.current = 0
        self.live: dict[int, weakref.ref] = {}
        self._next = 0x1000
        self.fail_alloc = False

    def allocate(self, shape, dtype) -> FakeBuffer:
        if self.fail_alloc:
            raise MemoryError("fake CUDA out of memory")
        buf = FakeBuffer(np.zeros(shape, dtype=dtype), self._next)
        self.live[self._next] = weakref.ref(buf)
        self._next += 0x1000
        return buf

    def resolve(self, address: int) -> np.ndarray:
        ref = self.live.get(address)
        buf = ref() if ref is not None else None
        if buf is None:
            raise RuntimeError(f"fake CUDA: illegal address {address:#x} (freed buffer)")
        return buf.array


class FakeDevice:
    """Implements the backend's ``CudaDevice`` protocol on :class:`FakeCuda`."""

    def __init__(self, cuda: FakeCuda, index: int = 0) -> None:
        self.cuda, self.index = cuda, index

    @contextlib.contextmanager
    def activate(self):
        old, self.cuda.current = self.cuda.current, self.index
        try:
            yield
        finally:
            self.cuda.current = old

    def properties(self):
        return {"name": "Fake GPU", "compute_capability": "9.0", "sm_count": "132", "cuda_version": "12.8"}

    def empty(self, shape, dtype):
        return self.cuda.allocate(shape, dtype)

    def address(self, buffer):
        return buffer.address

    def stream_handle(self):
        return 7

    def upload(self, buffer, host):
        buffer.array[...] = host

    def download(self, buffer):
        return buffer.array.copy()

    def synchronize(self):
        pass


# ------------------------------------------------------------------------------------------------- fake tensorrt
class FakeTensorRT(_Api):
    """``import tensorrt`` as seen by the backend. ``knobs`` inject the failures real TensorRT can produce."""

    def __init__(self, cuda: FakeCuda, major: int = 10) -> None:
        object.__setattr__(self, "_cuda", cuda)
        object.__setattr__(self, "_major", major)
        object.__setattr__(self, "knobs", _Knobs())
        object.__setattr__(self, "calls", [])  # (what, current device)
        object.__setattr__(self, "__spec__", importlib.machinery.ModuleSpec("tensorrt", None))
        api = _build_api(self, major)
        for name, value in api.items():
            object.__setattr__(self, name, value)

    def _log_call(self, what: str) -> None:
        object.__getattribute__(self, "calls").append((what, object.__getattribute__(self, "_cuda").current))


def touched_names() -> set[str]:
    """Every public TensorRT name accessed (attribute get/set, hasattr) since :func:`reset_touched`."""
    return set(_Recorder.touched)


def reset_touched() -> None:
    _Recorder.touched.clear()


class _Knobs:
    def __init__(self) -> None:
        self.get_timing_cache_none = False
        self.set_timing_cache_fails = False  # every blob refused
        self.refuse_nonempty_timing_cache = False  # an old/foreign blob refused, an empty one accepted
        self.refuse_shapes: set[tuple[int, ...]] = set()
        self.nan_outputs: set[str] = set()
        self.parse_fails = False
        self.builder_raises: Exception | None = None


def _build_api(trt: FakeTensorRT, major: int) -> dict:
    cuda: FakeCuda = object.__getattribute__(trt, "_cuda")
    knobs: _Knobs = object.__getattribute__(trt, "knobs")

    class DataType(_Api):
        def __init__(self, name: str) -> None:
            object.__setattr__(self, "_name", name)

        def __repr__(self) -> str:
            return f"DataType.{self._name}"

    float32, float16, uint8, int64 = DataType("FLOAT"), DataType("HALF"), DataType("UINT8"), DataType("INT64")
    np_of = {id(float32): np.float32, id(float16): np.float16, id(uint8): np.uint8, id(int64): np.int64}
    onnx_types = {TensorProto.FLOAT: float32, TensorProto.FLOAT16: float16, TensorProto.UINT8: uint8}

    def nptype(dtype):
        return np_of[id(dtype)]

    class ILogger(_Api):
        class Severity(_Api):
            INTERNAL_ERROR, ERROR, WARNING, INFO, VERBOSE = 0, 1, 2, 3, 4

        def __init__(self) -> None:
            pass

    flag_names = ["TF32", "FP16", "OBEY_PRECISION_CONSTRAINTS", "PREFER_PRECISION_CONSTRAINTS"]
    flag_names = flag_names if major < 11 else ["TF32"]
    BuilderFlag = _ApiMeta("BuilderFlag", (_Api,), {n: i for i, n in enumerate(flag_names)})
    net_flags = {"EXPLICIT_BATCH": 0, "STRONGLY_TYPED": 1} if major < 11 else {"STRONGLY_TYPED": 1}
    NetworkDefinitionCreationFlag = _ApiMeta("NetworkDefinitionCreationFlag", (_Api,), net_flags)
    TensorIOMode = _ApiMeta("TensorIOMode", (_Api,), {"NONE": 0, "INPUT": 1, "OUTPUT": 2})
    Strategy = _ApiMeta("ExecutionContextAllocationStrategy", (_Api,), {"STATIC": 0, "USER_MANAGED": 2})
    PreviewFeature = _ApiMeta("PreviewFeature", (_Api,), {"RUNTIME_ACTIVATION_RESIZE_10_10": 0})

    class ITensor(_Api):
        def __init__(self, name, shape, dtype) -> None:
            object.__setattr__(self, "name", name)
            object.__setattr__(self, "shape", tuple(shape))
            object.__setattr__(self, "dtype", dtype)

    layer_api = {}
    if major < 11:
        layer_api = {"precision": None, "set_output_type": lambda self, j, t: self._types.__setitem__(j, t)}

    def layer_init(self, name, outputs) -> None:
        object.__setattr__(self, "name", name)
        object.__setattr__(self, "_outputs", outputs)
        object.__setattr__(self, "_types", {})
        object.__setattr__(self, "num_outputs", len(outputs))

    ILayer = _ApiMeta(
        "ILayer", (_Api,), {"__init__": layer_init, "get_output": lambda self, j: self._outputs[j], **layer_api}
    )

    class INetworkDefinition(_Api):
        def __init__(self, flags: int) -> None:
            object.__setattr__(self, "_flags", flags)
            object.__setattr__(self, "_inputs", [])
            object.__setattr__(self, "_outputs", [])
            object.__setattr__(self, "_layers", [])

        @property
        def num_inputs(self):
            return len(self._inputs)

        def get_input(self, i):
            return self._inputs[i]

        @property
        def num_layers(self):
            return len(self._layers)

        def get_layer(self, i):
            return self._layers[i]

    class OnnxParser(_Api):
        def __init__(self, network, logger) -> None:
            object.__setattr__(self, "_network", network)
            object.__setattr__(self, "_errors", [])

        def parse_from_file(self, path):
            if knobs.parse_fails:
                self._errors.append("fake parser: unsupported operator")
                return False
            graph = onnx.load(path).graph
            net = self._network

            def dims(value_info):
                return [d.dim_value if d.HasField("dim_value") else -1 for d in value_info.type.tensor_type.shape.dim]

            for vi in graph.input:
                net._inputs.append(ITensor(vi.name, dims(vi), onnx_types[vi.type.tensor_type.elem_type]))
            for vi in graph.output:
                net._outputs.append(ITensor(vi.name, dims(vi), onnx_types[vi.type.tensor_type.elem_type]))
            for node in graph.node:
                outs = [ITensor(o, [], uint8 if o == "labels" else float32) for o in node.output]
                net._layers.append(ILayer(node.name, outs))
            return True

        @property
        def num_errors(self):
            return len(self._errors)

        def get_error(self, i):
            return self._errors[i]

    class ITimingCache(_Api):
        def __init__(self, blob: bytes) -> None:
            object.__setattr__(self, "_blob", bytes(blob))

        def serialize(self):
            return memoryview(self._blob + b"|timing")

    class IOptimizationProfile(_Api):
        def __init__(self) -> None:
            object.__setattr__(self, "_shapes", {})

        def set_shape(self, name, lo, opt, hi):
            self._shapes[name] = (tuple(lo), tuple(opt), tuple(hi))

    class IBuilderConfig(_Api):
        def __init__(self) -> None:
            object.__setattr__(self, "_flags", set())
            object.__setattr__(self, "_timing", None)
            object.__setattr__(self, "_profiles", [])
            self._flags.add("TF32")  # on by default, as in TensorRT

        def set_flag(self, flag):
            self._flags.add(flag_names[int(flag)])

        def clear_flag(self, flag):
            self._flags.discard(flag_names[int(flag)])

        def create_timing_cache(self, blob):
            return ITimingCache(blob)

        def set_timing_cache(self, cache, ignore_mismatch):
            if knobs.set_timing_cache_fails or (knobs.refuse_nonempty_timing_cache and cache._blob):
                return False
            object.__setattr__(self, "_timing", cache)
            return True

        def get_timing_cache(self):
            return None if knobs.get_timing_cache_none else self._timing

        def set_preview_feature(self, feature, enable):
            name = "RUNTIME_ACTIVATION_RESIZE_10_10" if int(feature) == 0 else str(feature)
            (self._flags.add if enable else self._flags.discard)(name)

        def add_optimization_profile(self, profile):
            self._profiles.append(profile)
            return len(self._profiles) - 1

    class Builder(_Api):
        def __init__(self, logger) -> None:
            trt._log_call("Builder")
            object.__setattr__(self, "_logger", logger)

        def create_network(self, flags):
            return INetworkDefinition(int(flags))

        def create_builder_config(self):
            return IBuilderConfig()

        def create_optimization_profile(self):
            return IOptimizationProfile()

        def build_serialized_network(self, network, config):
            trt._log_call("build_serialized_network")
            if knobs.builder_raises is not None:
                raise knobs.builder_raises
            lo, opt, hi = config._profiles[0]._shapes["image"]
            static = network.get_input(0).shape
            for axis, size in enumerate(static):
                if size > 0 and not lo[axis] == opt[axis] == hi[axis] == size:
                    self._logger.log(ILogger.Severity.ERROR, f"profile disagrees with static dim {axis}={size}")
                    return None
            pinned = [layer.name for layer in network._layers if layer._types]
            desc = {
                "profile": [lo, opt, hi],
                "flags": sorted(config._flags),
                "strongly_typed": bool(network._flags & (1 << 1)),
                "pinned": pinned,
                "outputs": [(t.name, list(t.shape)) for t in network._outputs],
                "device": cuda.current,
            }
            return memoryview(ENGINE_MAGIC + json.dumps(desc).encode())

    if major < 11:
        Builder.platform_has_fast_fp16 = True

    class IExecutionContext(_Api):
        def __init__(self, engine, strategy) -> None:
            trt._log_call("create_execution_context")
            object.__setattr__(self, "_engine", engine)
            object.__setattr__(self, "_shape", None)
            object.__setattr__(self, "_addresses", {})
            object.__setattr__(self, "_strategy", strategy)
            object.__setattr__(self, "_scratch", None)

        def set_input_shape(self, name, shape):
            lo, _, hi = self._engine._desc["profile"]
            inside = all(a <= v <= b for a, v, b in zip(lo, shape, hi, strict=True))
            ok = inside and tuple(shape) not in knobs.refuse_shapes
            if ok:
                object.__setattr__(self, "_shape", tuple(shape))
            return ok

        def get_tensor_shape(self, name):
            if name == "image":
                return self._shape
            out = dict(self._engine._outputs)[name]
            n, h, w = self._shape[:3]
            return (n, out[1] if out[1] > 0 else h, out[2] if out[2] > 0 else w)

        def update_device_memory_size_for_shapes(self):
            n, h, w, _ = self._shape
            return n * h * w * 16

        def set_device_memory(self, address, size):
            object.__setattr__(self, "_scratch", (address, size))

        def set_tensor_address(self, name, address):
            self._addresses[name] = address
            return True

        def execute_async_v3(self, stream):
            trt._log_call("execute_async_v3")
            if self._strategy == 2:  # USER_MANAGED
                cuda.resolve(self._scratch[0])
            image = cuda.resolve(self._addresses["image"]).astype(np.float32)
            for name, _ in self._engine._outputs:
                out = cuda.resolve(self._addresses[name])
                h, w = out.shape[1:]
                small = image[:, :h, :w].mean(-1)
                value = small.astype(out.dtype) if out.dtype == np.uint8 else small / 255.0 - 0.5
                out[...] = value
                if name in knobs.nan_outputs:
                    out.flat[0] = np.nan
            return True

    class ICudaEngine(_Api):
        def __init__(self, desc) -> None:
            object.__setattr__(self, "_desc", desc)
            object.__setattr__(self, "_outputs", [(n, s) for n, s in desc["outputs"]])
            object.__setattr__(self, "_names", ["image"] + [n for n, _ in desc["outputs"]])

        @property
        def num_io_tensors(self):
            return len(self._names)

        def get_tensor_name(self, i):
            return self._names[i]

        def get_tensor_mode(self, name):
            return TensorIOMode.INPUT if name == "image" else TensorIOMode.OUTPUT

        def get_tensor_dtype(self, name):
            return uint8 if name in ("image", "labels") else float32

        def create_execution_context(self, strategy=0):
            return IExecutionContext(self, strategy)

    class Runtime(_Api):
        def __init__(self, logger) -> None:
            trt._log_call("Runtime")

        def deserialize_cuda_engine(self, data):
            trt._log_call("deserialize_cuda_engine")
            data = bytes(data)
            if not data.startswith(ENGINE_MAGIC):
                return None
            return ICudaEngine(json.loads(data[len(ENGINE_MAGIC) :]))

    version = "10.16.1.11" if major < 11 else "11.4.0.106"
    api = {
        "__version__": version,
        "nptype": nptype,
        "float32": float32,
        "float16": float16,
        "ILogger": ILogger,
        "BuilderFlag": BuilderFlag,
        "NetworkDefinitionCreationFlag": NetworkDefinitionCreationFlag,
        "TensorIOMode": TensorIOMode,
        "ExecutionContextAllocationStrategy": Strategy,
        "ILayer": ILayer,
        "IBuilderConfig": IBuilderConfig,
        "PreviewFeature": PreviewFeature,
        "IExecutionContext": IExecutionContext,
        "Builder": Builder,
        "OnnxParser": OnnxParser,
        "Runtime": Runtime,
    }
    return api


# ------------------------------------------------------------------------------------------------ tiny ONNX graphs
def write_fake_onnx(
    path: Path, *, batch: int | None = None, scores: tuple[str, ...] = ("max_logit", "entropy"), out_hw=None
) -> Path:
    """A small valid fused-graph stand-in: ``image`` uint8 [N, H, W, 3] -> ``labels`` uint8, ``anomaly`` (+ one
    ``anomaly_<score>`` per further score) float32 [N, H', W'], with the moose metadata. ``batch`` fixes N;
    ``out_hw`` fixes (H', W'). Node names follow the exporter's scopes (network under ``/model/``, head fusion at
    the root)."""
    n = batch if batch is not None else "N"
    oh, ow = out_hw if out_hw is not None else ("H", "W")
    image = helper.make_tensor_value_info("image", TensorProto.UINT8, [n, "H", "W", 3])
    outputs = [helper.make_tensor_value_info("labels", TensorProto.UINT8, [n, oh, ow])]
    names = ["anomaly"] + [f"anomaly_{s}" for s in scores[1:]]
    outputs += [helper.make_tensor_value_info(name, TensorProto.FLOAT, [n, oh, ow]) for name in names]
    nodes = [
        helper.make_node("Cast", ["image"], ["x"], to=TensorProto.FLOAT, name="/Cast"),
        helper.make_node("ReduceMean", ["x"], ["m"], keepdims=0, axes=[3], name="/model/backbone/ReduceMean"),
        helper.make_node("Cast", ["m"], ["labels"], to=TensorProto.UINT8, name="/Cast_1"),
    ]
    nodes += [helper.make_node("Identity", ["m"], [name], name=f"/Identity_{i}") for i, name in enumerate(names)]
    model = helper.make_model(
        helper.make_graph(nodes, "fake", [image], outputs), opset_imports=[helper.make_opsetid("", 17)]
    )
    meta = ModelMeta(
        architecture="fake",
        classes=("a", "b"),
        colors=((0, 0, 0), (255, 255, 255)),
        scores=scores,
        output_size=tuple(out_hw) if out_hw is not None else None,
    )
    model.metadata_props.add(key=META_KEY, value=meta.to_json())
    onnx.save(model, str(path))
    return path
