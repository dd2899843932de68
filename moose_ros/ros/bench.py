"""``moose bench node``: end-to-end latency of ``moose_node`` over (loopback) DDS, inference time subtracted.

The node runs as a child process (:mod:`moose_ros.ros.launcher`, loopback DDS profile, own domain); this process
publishes rgb8 frames on ``image`` and subscribes to all five outputs. Per input size:

1. closed loop: publish one frame, wait for all its outputs and for the node's next ``/diagnostics`` message, repeat
   (``--frames`` times). End-to-end latency = time from just before ``publish()`` to the arrival of ``~/anomaly``
   in this process (frames are published and received as serialized CDR, so Python message conversion on this
   side is not counted, as for a C++ camera driver or viewer). Each diagnostics period then holds exactly one
   frame, so its ``inference_ms`` is that frame's inference time; overhead = median over frames of
   (e2e - inference); the table's inference column is the median inference time.
2. overload: publish at ``--rate`` Hz for ``--overload-seconds``; latency p95 of the frames that got through, to
   compare with 2x the inference time (latest-frame-wins keeps it bounded), and the drop count.

Prints a Markdown table (and writes JSON with ``--json``). ``--model passthrough`` serves a trivial graph (labels =
red channel, score = green channel) whose inference takes ~1 ms, so the node + DDS overhead is measured without the
noise of a long inference on a busy CPU.
"""

from __future__ import annotations

import json
import os
import struct
import tempfile
import time
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import numpy as np

from moose_ros.errors import ConfigError, MooseError

__all__ = ["HELP", "NodeBenchConfig", "SizeResult", "format_table", "passthrough_model", "run"]

HELP = "end-to-end latency of moose_node over DDS (publish -> ~/anomaly), inference time subtracted"

#: Overhead targets (ms, e2e p50 minus inference) by pixel count; the largest size at or below wins.
TARGETS_MS = ((1280 * 720, 8.0), (2048 * 1024, 15.0))
OUTPUTS = ("anomaly", "segmentation", "segmentation/color", "anomaly/overlay", "anomaly/mask")


@dataclass(frozen=True)
class SizeResult:
    """Measurements for one input size; times in milliseconds."""

    width: int
    height: int
    frames: int
    inference_ms: float
    e2e_p50_ms: float
    e2e_p95_ms: float
    overhead_p50_ms: float
    target_ms: float | None
    overload_published: int
    overload_processed: int
    overload_p95_ms: float | None
    overload_dropped: int


@dataclass(frozen=True)
class NodeBenchConfig:
    """What ``moose bench node`` measures (its options are parsed in :mod:`moose_ros.tools.bench`).

    Attributes:
        model: fused .onnx (None: the bundled model), or ``Path("passthrough")`` for a no-compute graph.
        backend, threads: the node's ``backend`` / ``threads`` parameters (0 = backend default).
        sizes: input sizes (height, width) in pixels.
        frames, warmup: closed-loop frames per size, and unmeasured frames before them.
        rate, overload_seconds: overload publish rate (Hz) and length (s; 0 = skip).
        timeout: seconds to wait for one frame's outputs.
        json: also write the results here; log_dir: node log folder (None: a temporary folder).
        check: exit status 1 when a target is missed.
    """

    model: Path | None = None
    backend: str = "auto"
    threads: int = 0
    sizes: tuple[tuple[int, int], ...] = ((720, 1280), (1024, 2048))
    frames: int = 30
    warmup: int = 3
    rate: float = 30.0
    overload_seconds: float = 5.0
    timeout: float = 60.0
    json: Path | None = None
    log_dir: Path | None = None
    check: bool = False


def passthrough_model(path: Path) -> Path:
    """Write a fused graph that honours the backend contract with almost no compute (labels = R, anomaly = G)."""
    import onnx
    from onnx import TensorProto, helper, numpy_helper

    from moose_ros.contract import META_KEY, ModelMeta

    def const(name: str, values: list[int]) -> Any:
        return numpy_helper.from_array(np.array(values, dtype=np.int64), name)

    nodes = [
        helper.make_node("Slice", ["image", "c0", "c1", "axis"], ["red"]),
        helper.make_node("Slice", ["image", "c1", "c2", "axis"], ["green"]),
        helper.make_node("Squeeze", ["red", "axis"], ["labels"]),
        helper.make_node("Squeeze", ["green", "axis"], ["green2d"]),
        helper.make_node("Cast", ["green2d"], ["anomaly"], to=TensorProto.FLOAT),
    ]
    graph = helper.make_graph(
        nodes, "passthrough",
        [helper.make_tensor_value_info("image", TensorProto.UINT8, ["N", "H", "W", 3])],
        [helper.make_tensor_value_info("labels", TensorProto.UINT8, ["N", "H", "W"]),
         helper.make_tensor_value_info("anomaly", TensorProto.FLOAT, ["N", "H", "W"])],
        [const("c0", [0]), const("c1", [1]), const("c2", [2]), const("axis", [3])],
    )
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])
    model.ir_version = 8
    meta = ModelMeta(architecture="passthrough", classes=("passthrough",), colors=((255, 255, 255),),
                     extra={"score_ranges": {"max_logit": [0.0, 255.0]}})
    helper.set_model_props(model, {META_KEY: meta.to_json()})
    onnx.save(model, str(path))
    return path


def _target(width: int, height: int) -> float | None:
    pixels = width * height
    eligible = [ms for limit, ms in TARGETS_MS if pixels <= limit]
    return eligible[0] if eligible else None


def format_table(results: list[SizeResult]) -> str:
    """The Markdown table of ``results``."""
    lines = [
        "| input | frames | inference ms | e2e p50 ms | e2e p95 ms | overhead p50 ms (target) | "
        "overload p95 ms (<= 2x inference) | overload processed/published |",
        "|---|---|---|---|---|---|---|---|",
    ]
    for r in results:
        target = "" if r.target_ms is None else f" ({'ok' if r.overhead_p50_ms <= r.target_ms else 'over'} "
        target += "" if r.target_ms is None else f"<= {r.target_ms:.0f})"
        if r.overload_p95_ms is None:
            over = "n/a"
        else:
            verdict = "ok" if r.overload_p95_ms <= 2 * r.inference_ms else "over"
            over = f"{r.overload_p95_ms:.1f} ({verdict}, 2x = {2 * r.inference_ms:.1f})"
        lines.append(
            f"| {r.height}x{r.width} | {r.frames} | {r.inference_ms:.1f} | {r.e2e_p50_ms:.1f} | {r.e2e_p95_ms:.1f} | "
            f"{r.overhead_p50_ms:.1f}{target} | {over} | {r.overload_processed}/{r.overload_published} |"
        )
    return "\n".join(lines)


class _Bench:
    """The benchmark's rclpy participant (own context on the node's domain)."""

    def __init__(self, domain_id: int) -> None:
        import rclpy
        from diagnostic_msgs.msg import DiagnosticArray
        from rclpy.executors import SingleThreadedExecutor
        from rclpy.qos import QoSProfile, ReliabilityPolicy
        from sensor_msgs.msg import Image

        self.context = rclpy.Context()
        rclpy.init(context=self.context, domain_id=domain_id)
        self.node = rclpy.create_node("moose_bench", context=self.context)
        self.executor = SingleThreadedExecutor(context=self.context)
        self.executor.add_node(self.node)
        self.arrivals: dict[str, dict[int, float]] = {name: {} for name in OUTPUTS}
        self.diagnostics: list[tuple[float, dict[str, str]]] = []
        qos = QoSProfile(depth=5, reliability=ReliabilityPolicy.RELIABLE)
        for name in OUTPUTS:
            self.node.create_subscription(Image, f"/moose_node/{name}", lambda m, n=name: self._arrived(n, m), qos,
                                          raw=True)
        self.node.create_subscription(DiagnosticArray, "/diagnostics", self._diag, 10)
        self.publisher = self.node.create_publisher(Image, "image", QoSProfile(depth=1,
                                                    reliability=ReliabilityPolicy.RELIABLE))

    def _arrived(self, name: str, raw: bytes) -> None:
        now = time.monotonic()
        sec, nanosec = struct.unpack_from("<iI", raw, 4)  # header.stamp right after the CDR encapsulation header
        self.arrivals[name][sec * 1_000_000_000 + nanosec] = now

    def _diag(self, msg: Any) -> None:
        for status in msg.status:
            if "moose_node" in status.name:
                self.diagnostics.append((time.monotonic(), {kv.key: kv.value for kv in status.values}))

    def spin_until(self, predicate: Any, timeout_s: float) -> bool:
        deadline = time.monotonic() + timeout_s
        while not predicate():
            if time.monotonic() > deadline:
                return False
            self.executor.spin_once(timeout_sec=0.001)
        return True

    def spin_for(self, seconds: float) -> None:
        end = time.monotonic() + seconds
        while (left := end - time.monotonic()) > 0:
            self.executor.spin_once(timeout_sec=min(left, 0.005))

    def publish(self, serialized: bytes, stamp_ns: int) -> float:
        """Publish a serialized Image with its stamp replaced; returns the send time (monotonic s)."""
        view = memoryview(serialized)
        data = b"".join((view[:4], struct.pack("<iI", *divmod(stamp_ns, 1_000_000_000)), view[12:]))
        sent = time.monotonic()
        self.publisher.publish(data)
        return sent

    def next_diagnostics(self, timeout_s: float = 5.0) -> int:
        """Wait for a new diagnostics message; return the index of it."""
        count = len(self.diagnostics)
        self.spin_until(lambda: len(self.diagnostics) > count, timeout_s)
        return len(self.diagnostics) - 1

    def close(self) -> None:
        self.executor.shutdown()
        self.node.destroy_node()
        self.context.try_shutdown()


def _measure_size(bench: _Bench, height: int, width: int, args: NodeBenchConfig, clock_ns: Any) -> SizeResult:
    from moose_ros.ros.cdr import serialize_image

    rng = np.random.default_rng(width * height)
    blocks = rng.integers(0, 256, (height // 32 + 1, width // 32 + 1, 3), dtype=np.uint8)
    image = np.repeat(np.repeat(blocks, 32, axis=0), 32, axis=1)[:height, :width]
    msg = serialize_image(0, 0, "bench", image)  # rgb8

    def one_frame() -> tuple[float, float]:
        """(e2e ms, inference ms) of one frame; the node processes nothing else in its diagnostics period."""
        seen = len(bench.diagnostics)
        processed = int(bench.diagnostics[-1][1]["processed"]) if bench.diagnostics else 0
        stamp = clock_ns()
        sent = bench.publish(msg, stamp)
        done = bench.spin_until(lambda: all(stamp in bench.arrivals[n] for n in OUTPUTS), args.timeout)
        if not done:
            missing = [n for n in OUTPUTS if stamp not in bench.arrivals[n]]
            raise MooseError(f"no {', '.join(missing)} output within {args.timeout:.0f} s for a {height}x{width} frame")

        def period() -> dict[str, str] | None:
            return next((v for _, v in bench.diagnostics[seen:] if int(v["processed"]) > processed), None)

        bench.spin_until(lambda: period() is not None, 5.0)
        values = period()
        infer = float(values["inference_ms"]) if values is not None else float("nan")
        return (bench.arrivals["anomaly"][stamp] - sent) * 1e3, infer

    for _ in range(args.warmup):
        one_frame()
    frames = [one_frame() for _ in range(args.frames)]
    e2e = [f[0] for f in frames]
    overhead = [f[0] - f[1] for f in frames]
    infer = float(np.nanmedian([f[1] for f in frames]))
    published = processed = 0
    p95 = None
    dropped = 0
    if args.overload_seconds > 0:
        sent: dict[int, float] = {}
        before = bench.diagnostics[-1][1]
        start = time.monotonic()
        while time.monotonic() - start < args.overload_seconds:
            stamp = clock_ns()
            sent[stamp] = bench.publish(msg, stamp)
            bench.spin_for(start + len(sent) / args.rate - time.monotonic())
        bench.spin_for(min(args.timeout, 2.0 + 3 * infer / 1e3))
        lat = [(bench.arrivals["anomaly"][s] - t) * 1e3 for s, t in sent.items() if s in bench.arrivals["anomaly"]]
        after = bench.diagnostics[bench.next_diagnostics()][1]
        published, processed = len(sent), len(lat)
        p95 = float(np.percentile(lat, 95)) if lat else None
        dropped = int(after["dropped"]) - int(before["dropped"])
    return SizeResult(
        width=width, height=height, frames=len(e2e), inference_ms=infer,
        e2e_p50_ms=float(np.percentile(e2e, 50)), e2e_p95_ms=float(np.percentile(e2e, 95)),
        overhead_p50_ms=float(np.nanpercentile(overhead, 50)), target_ms=_target(width, height),
        overload_published=published, overload_processed=processed, overload_p95_ms=p95, overload_dropped=dropped,
    )


def run(args: NodeBenchConfig) -> int:
    """Run the benchmark; prints the Markdown table; returns 0 (1 with ``--check`` if a target was missed)."""
    from moose_ros.dds import loopback_env
    from moose_ros.resources import bundled_model_path
    from moose_ros.ros import launcher

    if args.frames < 1 or args.rate <= 0:
        raise ConfigError(f"--frames must be >= 1 and --rate > 0, got {args.frames} and {args.rate}")
    log_dir = args.log_dir or Path(tempfile.mkdtemp(prefix="moose_bench_"))
    log_dir.mkdir(parents=True, exist_ok=True)
    if args.model is None:
        model = bundled_model_path()
    elif str(args.model) == "passthrough":
        model = passthrough_model(log_dir / "passthrough.onnx")
    else:
        model = args.model
    env = loopback_env(log_dir=log_dir / "ros_logs")
    # This process is a DDS participant too: the same loopback profile, before rclpy creates anything.
    os.environ.update({k: env[k] for k in ("FASTDDS_DEFAULT_PROFILES_FILE", "RMW_IMPLEMENTATION", "ROS_DOMAIN_ID")})
    for key in ("ROS_AUTOMATIC_DISCOVERY_RANGE", "ROS_STATIC_PEERS"):
        os.environ.pop(key, None)
    log_path = log_dir / "node.log"
    params = {"model": str(model), "backend": args.backend, "threads": args.threads, "diagnostics_period": 0.25,
              "warmup": False, "max_latency_ms": 1e6}
    proc = launcher.start_node(params, env=env, log_path=log_path)
    bench = _Bench(int(env["ROS_DOMAIN_ID"]))
    results: list[SizeResult] = []
    try:
        launcher.wait_for_topic(bench.node, "/moose_node/anomaly", proc=proc, log_path=log_path,
                                executor=bench.executor, timeout_s=120.0)
        bench.spin_until(lambda: bench.node.count_subscribers("image") > 0, 10.0)
        clock = bench.node.get_clock()
        for height, width in args.sizes:
            results.append(_measure_size(bench, height, width, args, lambda: clock.now().nanoseconds))
    finally:
        bench.close()
        launcher.stop(proc)
    print(f"moose_node end-to-end latency (model {model}, backend {args.backend}, all outputs subscribed, "
          f"loopback DDS; node log {log_path})\n")
    print(format_table(results))
    if args.json is not None:
        args.json.parent.mkdir(parents=True, exist_ok=True)
        args.json.write_text(json.dumps([asdict(r) for r in results], indent=2) + "\n")
    missed = [r for r in results if r.target_ms is not None and r.overhead_p50_ms > r.target_ms]
    missed += [r for r in results if r.overload_p95_ms is not None and r.overload_p95_ms > 2 * r.inference_ms]
    return 1 if missed and args.check else 0
