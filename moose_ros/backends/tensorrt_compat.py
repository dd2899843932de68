"""What differs between TensorRT 10 and 11, behind small capability checks (no TensorRT import here).

TensorRT 11 removed weakly typed networks: ``BuilderFlag.FP16``, ``OBEY/PREFER_PRECISION_CONSTRAINTS``,
``Builder.platform_has_fast_fp16``, ``ILayer.precision`` and ``ILayer.set_output_type`` are gone and every
network is strongly typed (tensor types come from the graph). The backend never branches on a version number:
it asks :class:`Capabilities` whether a name exists.

:data:`TRT_API` lists every TensorRT name the backend touches. A test checks each against the names registered
in the published ``tensorrt-cu12-bindings`` (10.x) and ``tensorrt-cu13-bindings`` (11.x) extension modules, and
the fake TensorRT the pure-Python tests run on records every name the backend touches, which must be listed here.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from typing import Any

__all__ = [
    "OPTIONAL_API",
    "TRT_API",
    "Capabilities",
    "PrecisionPlan",
    "make_logger",
    "plan_precision",
    "supported_version",
]

LOG = logging.getLogger("moose_ros.backends.tensorrt")

#: Oldest and first unsupported major version (the ``gpu`` extra pins the same range).
SUPPORTED_MAJORS = (10, 12)

#: Names present in every supported version (checked against the 10.x and 11.x bindings).
TRT_API: tuple[str, ...] = (
    "__version__", "ILogger", "Severity", "ERROR", "WARNING", "log", "nptype", "float32", "float16",
    "Builder", "create_network", "create_builder_config", "create_optimization_profile", "build_serialized_network",
    "NetworkDefinitionCreationFlag", "STRONGLY_TYPED",
    "OnnxParser", "parse_from_file", "num_errors", "get_error",
    "num_inputs", "get_input", "shape", "name", "num_layers", "get_layer", "num_outputs", "get_output", "dtype",
    "BuilderFlag", "TF32", "set_flag", "clear_flag",
    "create_timing_cache", "set_timing_cache", "get_timing_cache", "serialize",
    "set_shape", "add_optimization_profile",
    "Runtime", "deserialize_cuda_engine",
    "num_io_tensors", "get_tensor_name", "get_tensor_mode", "get_tensor_dtype", "TensorIOMode",
    "INPUT", "OUTPUT", "create_execution_context",
    "IExecutionContext", "ExecutionContextAllocationStrategy", "USER_MANAGED", "update_device_memory_size_for_shapes",
    "set_device_memory", "set_input_shape", "get_tensor_shape", "set_tensor_address", "execute_async_v3",
    "ILayer", "IBuilderConfig", "PreviewFeature", "set_preview_feature", "RUNTIME_ACTIVATION_RESIZE_10_10",
)  # fmt: skip

#: Names the backend uses only where they exist (TensorRT 10: weakly typed fp16 with precision constraints).
OPTIONAL_API: tuple[str, ...] = (
    "FP16", "OBEY_PRECISION_CONSTRAINTS", "platform_has_fast_fp16", "precision", "set_output_type",
)  # fmt: skip


def supported_version(version: str) -> tuple[bool, int]:
    """(supported?, major) for a ``tensorrt.__version__`` string; major is -1 when unreadable."""
    try:
        major = int(str(version).split(".")[0])
    except ValueError:
        return False, -1
    return SUPPORTED_MAJORS[0] <= major < SUPPORTED_MAJORS[1], major


@dataclass(frozen=True)
class Capabilities:
    """Which optional TensorRT features the imported module offers (each True/False by name lookup only).

    Attributes:
        version: ``tensorrt.__version__``.
        fp16_flag: ``BuilderFlag.FP16`` exists (weakly typed fp16 builds; removed in 11).
        precision_constraints: ``BuilderFlag.OBEY_PRECISION_CONSTRAINTS`` and the per-layer ``ILayer.precision`` /
            ``set_output_type`` exist (removed in 11).
        strongly_typed: ``NetworkDefinitionCreationFlag.STRONGLY_TYPED`` exists (types come from the graph).
        tf32_flag: ``BuilderFlag.TF32`` exists (on by default: fp32 convolutions/matmuls in TF32 on Ampere+).
        fast_fp16_query: ``Builder.platform_has_fast_fp16`` exists (removed in 11).
        user_managed_memory: a context can be created without memory
            (``ExecutionContextAllocationStrategy.USER_MANAGED``) and sized to the current shapes
            (``update_device_memory_size_for_shapes``, ``set_device_memory``) instead of the profile's max.
        activation_resize: ``PreviewFeature.RUNTIME_ACTIVATION_RESIZE_10_10`` can be enabled at build time, so that
            ``update_device_memory_size_for_shapes`` really shrinks the activation memory for smaller inputs.
    """

    version: str
    fp16_flag: bool
    precision_constraints: bool
    strongly_typed: bool
    tf32_flag: bool
    fast_fp16_query: bool
    user_managed_memory: bool
    activation_resize: bool = False

    @classmethod
    def of(cls, trt: Any) -> Capabilities:
        """Probe the imported ``tensorrt`` module ``trt``."""
        flags, layer = trt.BuilderFlag, getattr(trt, "ILayer", None)
        strategy = getattr(trt, "ExecutionContextAllocationStrategy", None)
        context = getattr(trt, "IExecutionContext", None)
        return cls(
            version=str(trt.__version__),
            fp16_flag=hasattr(flags, "FP16"),
            precision_constraints=hasattr(flags, "OBEY_PRECISION_CONSTRAINTS")
            and layer is not None
            and hasattr(layer, "precision")
            and hasattr(layer, "set_output_type"),
            strongly_typed=hasattr(trt.NetworkDefinitionCreationFlag, "STRONGLY_TYPED"),
            tf32_flag=hasattr(flags, "TF32"),
            fast_fp16_query=hasattr(trt.Builder, "platform_has_fast_fp16"),
            user_managed_memory=strategy is not None
            and hasattr(strategy, "USER_MANAGED")
            and context is not None
            and hasattr(context, "update_device_memory_size_for_shapes")
            and hasattr(context, "set_device_memory"),
            activation_resize=hasattr(getattr(trt, "PreviewFeature", None), "RUNTIME_ACTIVATION_RESIZE_10_10")
            and hasattr(getattr(trt, "IBuilderConfig", None), "set_preview_feature"),
        )


@dataclass(frozen=True)
class PrecisionPlan:
    """How an engine's precision is decided.

    Attributes:
        mode: ``"fp32"`` (float32 everywhere, TF32 off where the flag exists), ``"fp16-obey"`` (TensorRT 10: FP16
            flag, the head aggregation/scoring layers pinned to float32 with OBEY_PRECISION_CONSTRAINTS, so
            TensorRT fails instead of silently running them in float16), or ``"typed"`` (strongly typed network:
            every tensor keeps the type of the exported graph; an all-float32 export runs in float32 with TF32
            allowed).
        strongly_typed: create the network with the STRONGLY_TYPED flag.
        note: why this plan was chosen (logged, and stated in the docs).
    """

    mode: str
    strongly_typed: bool
    note: str

    @property
    def label(self) -> str:
        """The engine-key precision field."""
        return self.mode


def plan_precision(caps: Capabilities, fp16: bool) -> PrecisionPlan:
    """Pick the precision plan for a build asked for fp16 (True) or fp32 (False) on a TensorRT with ``caps``."""
    if fp16 and caps.fp16_flag and caps.precision_constraints:
        return PrecisionPlan("fp16-obey", False, "FP16 flag with the scoring layers pinned to float32 (OBEY)")
    if fp16:
        if not caps.strongly_typed:
            raise_note = "neither the FP16 flag with precision constraints nor strongly typed networks exist"
            return PrecisionPlan("fp32", False, f"fp16 asked, but {raise_note}: building fp32")
        return PrecisionPlan(
            "typed",
            True,
            f"TensorRT {caps.version} has no FP16 builder flag: strongly typed network, precisions as exported",
        )
    return PrecisionPlan("fp32", caps.strongly_typed, "fp32 asked: float32 everywhere, TF32 off")


def make_logger(trt: Any) -> Any:
    """A ``trt.ILogger`` that forwards TensorRT's messages to :mod:`logging` (errors, warnings, the rest as debug)."""

    class Forward(trt.ILogger):
        def __init__(self) -> None:
            trt.ILogger.__init__(self)

        def log(self, severity: Any, msg: str) -> None:
            if int(severity) <= int(trt.ILogger.Severity.ERROR):  # INTERNAL_ERROR = 0, ERROR = 1
                LOG.error("TensorRT: %s", msg)
            elif int(severity) == int(trt.ILogger.Severity.WARNING):
                LOG.warning("TensorRT: %s", msg)
            else:
                LOG.debug("TensorRT: %s", msg)

    return Forward()
