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
class _Knobs:
    """Failures real TensorRT can produce, switched on by the tests."""

    def __init__(self) -> None:
        self.get_timing_cache_none = False
        self.set_timing_cache_fails = False  # every blob refused
        self.refuse_nonempty_timing_cache = False  # an old/foreign blob refused, an empty one accepted
        self.refuse_shapes: set[tuple[int, ...]] = set()
        self.nan_outputs: set[str] = set()
        self.parse_fails = False
        self.builder_raises: Exception | None = None


class _State:
    """What one fake TensorRT shares between its objects: the fake CUDA, the knobs, the call log, the version."""

    def __init__(self, cuda: FakeCuda, major: int) -> None:
        self.cuda, self.major, self.knobs = cuda, major, _Knobs()
        self.calls: list[tuple[str, int]] = []  # (TensorRT call, current CUDA device during it)
        self.flag_names = ["TF32"] if major >= 11 else ["TF32", "FP16", "OBEY_PRECISION_CONSTRAINTS"]

    def log_call(self, what: str) -> None:
        self.calls.append((what, self.cuda.current))


def touched_names() -> set[str]:
    """Every public TensorRT name accessed (attribute get/set, hasattr) since :func:`reset_touched`."""
    return set(_Recorder.touched)


def reset_touched() -> None:
    _Recorder.touched.clear()


class DataType(_Api):
    def __init__(self, name: str) -> None:
        object.__setattr__(self, "_name", name)

    def __repr__(self) -> str:
        return f"DataType.{self._name}"


FLOAT, HALF, UINT8 = DataType("FLOAT"), DataType("HALF"), DataType("UINT8")
_NUMPY = {id(FLOAT): np.float32, id(HALF): np.float16, id(UINT8): np.uint8}
_FROM_ONNX = {TensorProto.FLOAT: FLOAT, TensorProto.FLOAT16: HALF, TensorProto.UINT8: UINT8}


def nptype(dtype: DataType) -> type:
    return _NUMPY[id(dtype)]


class ILogger(_Api):
    class Severity(_Api):
        INTERNAL_ERROR, ERROR, WARNING, INFO, VERBOSE = 0, 1, 2, 3, 4

    def __init__(self) -> None:
        pass


class TensorIOMode(_Api):
    NONE, INPUT, OUTPUT = 0, 1, 2


class ExecutionContextAllocationStrategy(_Api):
    STATIC, USER_MANAGED = 0, 2


class PreviewFeature(_Api):
    RUNTIME_ACTIVATION_RESIZE_10_10 = 0


class ITensor(_Api):
    def __init__(self, name: str, shape, dtype: DataType) -> None:
        object.__setattr__(self, "name", name)
        object.__setattr__(self, "shape", tuple(shape))
        object.__setattr__(self, "dtype", dtype)


class ILayer(_Api):
    def __init__(self, name: str, outputs: list[ITensor]) -> None:
        object.__setattr__(self, "name", name)
        object.__setattr__(self, "_outputs", outputs)
        object.__setattr__(self, "_types", {})
        object.__setattr__(self, "num_outputs", len(outputs))

    def get_output(self, index: int) -> ITensor:
        return self._outputs[index]


class ILayer10(ILayer):
    """TensorRT 10's layer: per-layer precision constraints (removed in 11)."""

    precision = None

    def set_output_type(self, index: int, dtype: DataType) -> None:
        self._types[index] = dtype


class INetworkDefinition(_Api):
    def __init__(self, flags: int) -> None:
        object.__setattr__(self, "_flags", flags)
        object.__setattr__(self, "_inputs", [])
        object.__setattr__(self, "_outputs", [])
        object.__setattr__(self, "_layers", [])

    @property
    def num_inputs(self) -> int:
        return len(self._inputs)

    def get_input(self, index: int) -> ITensor:
        return self._inputs[index]

    @property
    def num_layers(self) -> int:
        return len(self._layers)

    def get_layer(self, index: int) -> ILayer:
        return self._layers[index]


def _dims(value_info) -> list[int]:
    return [d.dim_value if d.HasField("dim_value") else -1 for d in value_info.type.tensor_type.shape.dim]


class OnnxParser(_Api):
    """Reads the real ONNX file: inputs/outputs with their dims, one layer per node named after it."""

    _state: _State

    def __init__(self, network: INetworkDefinition, logger) -> None:
        object.__setattr__(self, "_network", network)
        object.__setattr__(self, "_errors", [])

    def parse_from_file(self, path: str) -> bool:
        if self._state.knobs.parse_fails:
            self._errors.append("fake parser: unsupported operator")
            return False
        graph, net = onnx.load(path).graph, self._network
        layer_type = ILayer10 if self._state.major < 11 else ILayer
        for source, target in ((graph.input, net._inputs), (graph.output, net._outputs)):
            target.extend(ITensor(v.name, _dims(v), _FROM_ONNX[v.type.tensor_type.elem_type]) for v in source)
        for node in graph.node:
            outputs = [ITensor(o, [], UINT8 if o == "labels" else FLOAT) for o in node.output]
            net._layers.append(layer_type(node.name, outputs))
        return True

    @property
    def num_errors(self) -> int:
        return len(self._errors)

    def get_error(self, index: int) -> str:
        return self._errors[index]


class ITimingCache(_Api):
    def __init__(self, blob: bytes) -> None:
        object.__setattr__(self, "_blob", bytes(blob))

    def serialize(self) -> memoryview:
        return memoryview(self._blob + b"|timing")


class IOptimizationProfile(_Api):
    def __init__(self) -> None:
        object.__setattr__(self, "_shapes", {})

    def set_shape(self, name: str, low, opt, high) -> None:
        self._shapes[name] = (tuple(low), tuple(opt), tuple(high))


class IBuilderConfig(_Api):
    def __init__(self, state: _State) -> None:
        object.__setattr__(self, "_state", state)
        object.__setattr__(self, "_flags", {"TF32"})  # on by default, as in TensorRT
        object.__setattr__(self, "_timing", None)
        object.__setattr__(self, "_profiles", [])

    def set_flag(self, flag: int) -> None:
        self._flags.add(self._state.flag_names[int(flag)])

    def clear_flag(self, flag: int) -> None:
        self._flags.discard(self._state.flag_names[int(flag)])

    def set_preview_feature(self, feature: int, enable: bool) -> None:
        (self._flags.add if enable else self._flags.discard)("RUNTIME_ACTIVATION_RESIZE_10_10")

    def create_timing_cache(self, blob: bytes) -> ITimingCache:
        return ITimingCache(blob)

    def set_timing_cache(self, cache: ITimingCache, ignore_mismatch: bool) -> bool:
        knobs = self._state.knobs
        if knobs.set_timing_cache_fails or (knobs.refuse_nonempty_timing_cache and cache._blob):
            return False
        object.__setattr__(self, "_timing", cache)
        return True

    def get_timing_cache(self) -> ITimingCache | None:
        return None if self._state.knobs.get_timing_cache_none else self._timing

    def add_optimization_profile(self, profile: IOptimizationProfile) -> int:
        self._profiles.append(profile)
        return len(self._profiles) - 1


class Builder(_Api):
    """Builds a 'serialised engine': magic + JSON describing what the build was asked for."""

    _state: _State

    def __init__(self, logger) -> None:
        self._state.log_call("Builder")
        object.__setattr__(self, "_logger", logger)

    def create_network(self, flags: int) -> INetworkDefinition:
        return INetworkDefinition(int(flags))

    def create_builder_config(self) -> IBuilderConfig:
        return IBuilderConfig(self._state)

    def create_optimization_profile(self) -> IOptimizationProfile:
        return IOptimizationProfile()

    def build_serialized_network(self, network: INetworkDefinition, config: IBuilderConfig):
        self._state.log_call("build_serialized_network")
        if self._state.knobs.builder_raises is not None:
            raise self._state.knobs.builder_raises
        low, opt, high = config._profiles[0]._shapes["image"]
        for axis, size in enumerate(network._inputs[0].shape):  # TensorRT rejects a profile off a static dim
            if size > 0 and not low[axis] == opt[axis] == high[axis] == size:
                self._logger.log(ILogger.Severity.ERROR, f"profile disagrees with static dim {axis}={size}")
                return None
        desc = {
            "profile": [low, opt, high],
            "flags": sorted(config._flags),
            "strongly_typed": bool(network._flags & (1 << 1)),
            "pinned": [layer.name for layer in network._layers if layer._types],
            "outputs": [(t.name, list(t.shape)) for t in network._outputs],
            "device": self._state.cuda.current,
        }
        return memoryview(ENGINE_MAGIC + json.dumps(desc).encode())


class Builder10(Builder):
    platform_has_fast_fp16 = True


class IExecutionContext(_Api):
    """Runs the fake engine: outputs = mean over RGB of the top-left [H', W'] of the input (labels as uint8)."""

    def __init__(self, state: _State, engine: ICudaEngine, strategy: int) -> None:
        state.log_call("create_execution_context")
        for name, value in (("_state", state), ("_engine", engine), ("_strategy", strategy)):
            object.__setattr__(self, name, value)
        object.__setattr__(self, "_shape", None)
        object.__setattr__(self, "_addresses", {})
        object.__setattr__(self, "_scratch", None)

    def set_input_shape(self, name: str, shape) -> bool:
        low, _, high = self._engine._desc["profile"]
        inside = all(a <= v <= b for a, v, b in zip(low, shape, high, strict=True))
        ok = inside and tuple(shape) not in self._state.knobs.refuse_shapes
        if ok:
            object.__setattr__(self, "_shape", tuple(shape))
        return ok

    def get_tensor_shape(self, name: str) -> tuple[int, ...]:
        if name == "image":
            return self._shape
        out = dict(self._engine._outputs)[name]
        n, h, w = self._shape[:3]
        return (n, out[1] if out[1] > 0 else h, out[2] if out[2] > 0 else w)

    def update_device_memory_size_for_shapes(self) -> int:
        n, h, w, _ = self._shape
        return n * h * w * 16

    def set_device_memory(self, address: int, size: int) -> None:
        object.__setattr__(self, "_scratch", (address, size))

    def set_tensor_address(self, name: str, address: int) -> bool:
        self._addresses[name] = address
        return True

    def execute_async_v3(self, stream: int) -> bool:
        state = self._state
        state.log_call("execute_async_v3")
        if self._strategy == ExecutionContextAllocationStrategy.USER_MANAGED:
            state.cuda.resolve(self._scratch[0])
        image = state.cuda.resolve(self._addresses["image"]).astype(np.float32)
        for name, _ in self._engine._outputs:
            out = state.cuda.resolve(self._addresses[name])
            mean = image[:, : out.shape[1], : out.shape[2]].mean(-1)
            out[...] = mean.astype(out.dtype) if out.dtype == np.uint8 else mean / 255.0 - 0.5
            if name in state.knobs.nan_outputs:
                out.flat[0] = np.nan
        return True


class ICudaEngine(_Api):
    def __init__(self, state: _State, desc: dict) -> None:
        object.__setattr__(self, "_state", state)
        object.__setattr__(self, "_desc", desc)
        object.__setattr__(self, "_outputs", [(n, s) for n, s in desc["outputs"]])
        object.__setattr__(self, "_names", ["image"] + [n for n, _ in desc["outputs"]])

    @property
    def num_io_tensors(self) -> int:
        return len(self._names)

    def get_tensor_name(self, index: int) -> str:
        return self._names[index]

    def get_tensor_mode(self, name: str) -> int:
        return TensorIOMode.INPUT if name == "image" else TensorIOMode.OUTPUT

    def get_tensor_dtype(self, name: str) -> DataType:
        return UINT8 if name in ("image", "labels") else FLOAT

    def create_execution_context(self, strategy: int = 0) -> IExecutionContext:
        return IExecutionContext(self._state, self, strategy)


class Runtime(_Api):
    _state: _State

    def __init__(self, logger) -> None:
        self._state.log_call("Runtime")

    def deserialize_cuda_engine(self, data) -> ICudaEngine | None:
        self._state.log_call("deserialize_cuda_engine")
        data = bytes(data)
        if not data.startswith(ENGINE_MAGIC):
            return None
        return ICudaEngine(self._state, json.loads(data[len(ENGINE_MAGIC) :]))


class FakeTensorRT(_Api):
    """``import tensorrt`` as seen by the backend. ``knobs`` inject failures; ``calls`` logs (call, device)."""

    def __init__(self, cuda: FakeCuda, major: int = 10) -> None:
        state = _State(cuda, major)
        old = major < 11
        flags = _ApiMeta("BuilderFlag", (_Api,), {n: i for i, n in enumerate(state.flag_names)})
        net_flags = {"EXPLICIT_BATCH": 0, "STRONGLY_TYPED": 1} if old else {"STRONGLY_TYPED": 1}
        api = {
            "__version__": "10.16.1.11" if old else "11.4.0.106",
            "__spec__": importlib.machinery.ModuleSpec("tensorrt", None),
            "knobs": state.knobs,
            "calls": state.calls,
            "nptype": nptype,
            "float32": FLOAT,
            "float16": HALF,
            "ILogger": ILogger,
            "BuilderFlag": flags,
            "NetworkDefinitionCreationFlag": _ApiMeta("NetworkDefinitionCreationFlag", (_Api,), net_flags),
            "TensorIOMode": TensorIOMode,
            "ExecutionContextAllocationStrategy": ExecutionContextAllocationStrategy,
            "PreviewFeature": PreviewFeature,
            "ILayer": ILayer10 if old else ILayer,
            "IBuilderConfig": IBuilderConfig,
            "IExecutionContext": IExecutionContext,
            "Builder": _ApiMeta("Builder", (Builder10 if old else Builder,), {"_state": state}),
            "OnnxParser": _ApiMeta("OnnxParser", (OnnxParser,), {"_state": state}),
            "Runtime": _ApiMeta("Runtime", (Runtime,), {"_state": state}),
        }
        for name, value in api.items():
            object.__setattr__(self, name, value)


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
