"""``moose_node``: MOoSe anomaly segmentation for camera streams.

Subscribes ``<camera>/image`` (sensor_msgs/Image) and/or ``<camera>/image/compressed``; publishes, with the
input header, ``~/[<camera>/]segmentation`` (mono8 class ids), ``.../segmentation/color`` (rgb8), ``.../anomaly``
(32FC1 raw score), ``.../anomaly/overlay`` (rgb8) and ``.../anomaly/mask`` (mono8 0/255), plus ``/diagnostics``.

Latest frame wins: callbacks only keep the newest message per camera (overwriting an unprocessed one counts a
drop); one worker thread decodes, runs the frame pipeline (:mod:`moose_ros.pipeline`: only the outputs somebody
subscribes to) and publishes, raw outputs first. Images travel as serialized CDR (:mod:`moose_ros.ros.cdr`): inputs
are read zero-copy and outputs built with one copy, skipping rclpy's message conversion. The work itself lives in
:class:`~moose_ros.ros.core.MooseCore`, which this module's node and the lifecycle node hold; this module is the
entry point (``main``). Parameters: :mod:`moose_ros.ros.params`.
"""

from __future__ import annotations

import sys
from typing import Any

import rclpy
from rclpy.executors import ExternalShutdownException
from rclpy.node import Node

from moose_ros.errors import ConfigError, MooseError
from moose_ros.ros import param_sources
from moose_ros.ros.core import OUTPUTS, MooseCore
from moose_ros.ros.rclpy_private import RCLError
from moose_ros.ros.usage import usage, wants_help

__all__ = ["OUTPUTS", "MooseNode", "main"]


class MooseNode(Node):
    """The ROS 2 node: one :class:`~moose_ros.ros.core.MooseCore` (one backend shared by all cameras), started
    at once: parameters, model, publishers, subscriptions."""

    def __init__(self, *, argv: list[str] | None = None, **kwargs: Any) -> None:
        """``argv``: the command line the node was started with (default ``sys.argv``), read again to report
        which params file or ``-p`` set each value; ``kwargs`` go to :class:`rclpy.node.Node`."""
        super().__init__("moose_node", **kwargs)
        self.core = MooseCore(self, argv)
        self.core.load()
        self.core.open_outputs()
        self.core.open_inputs()
        self.core.log_ready()

    def close(self, *, destroy: bool = True) -> None:
        """Stop inputs and worker, release the backend and destroy the node (``destroy=False``: after a stop
        signal, only stop and release; see :meth:`MooseCore.close`)."""
        self.core.close(destroy=destroy)
        if destroy:
            self.destroy_node()


def _node_class(argv: list[str]) -> type:
    """:class:`MooseNode`, or the lifecycle node when ``managed`` is true for this node on the command line or in a
    params file that applies to it. Reads every params file once, so a YAML error is one line naming the file."""
    command_line = param_sources.parse_command_line(argv)
    fqn = command_line.node_fqn("moose_node")
    reports = [param_sources.read_params_file(path, fqn) for path in command_line.params_files]
    managed = command_line.value("managed", reports)
    if managed is None or managed is False:
        return MooseNode
    if managed is not True:
        raise ConfigError(f"parameter 'managed' = {managed!r} is invalid: expected true or false")
    from moose_ros.ros.lifecycle import MooseLifecycleNode

    return MooseLifecycleNode


def main(args: list[str] | None = None) -> int:
    """Entry point of ``moose_node``; returns the exit status (2 for configuration or model errors).

    ``-h``/``--help`` prints the usage and returns 0 without initialising ROS. Params files are read once before
    ``rclpy.init`` so a YAML error is one line naming the file. Only rclpy APIs present since Humble are used.
    """
    argv = list(sys.argv if args is None else args)
    if wants_help(argv[1:]):
        print(usage())
        return 0
    try:
        node_class = _node_class(argv)
        rclpy.init(args=argv)
        node = node_class(argv=argv)
        signalled = False
        try:
            rclpy.spin(node)
        except (KeyboardInterrupt, ExternalShutdownException):
            signalled = True
            raise
        finally:
            node.close(destroy=not signalled and rclpy.ok())
    except (KeyboardInterrupt, ExternalShutdownException):
        return 0
    except MooseError as err:
        print(f"moose_node: error: {err}", file=sys.stderr)
        return 2
    except RCLError as err:
        # SIGINT/SIGTERM shut the context down while spin built its wait set, or while the node was still being
        # set up (its next rclpy call then fails): a requested stop, not an error
        if not rclpy.ok():
            return 0
        print(f"moose_node: error: {str(err).splitlines()[0]}", file=sys.stderr)
        return 2
    finally:
        rclpy.try_shutdown()
    return 0


if __name__ == "__main__":
    sys.exit(main())
