"""``moose_node`` as a managed (lifecycle) node: ``managed: true``.

Transitions (lifecycle_msgs services ``~/change_state``, ``~/get_state``; ``ros2 lifecycle set /moose_node ...``):

- configure: load and check the model (TensorRT builds or loads its engine here), warm up, create the publishers
  and the worker thread. A model or parameter error fails the transition (the node stays unconfigured).
- activate: subscribe the inputs and start ``/diagnostics``; frames are processed and published.
- deactivate: unsubscribe and stop diagnostics; a frame in flight is not published.
- cleanup: stop the worker, destroy the publishers and free the backend (memory, GPU engine).
- shutdown: all of the above from any state.

Parameters are declared when the process starts, so they can be read and set before configure: every parameter
(``model``, ``backend``, ``cameras`` ... included) may be set while the node is unconfigured, so a failed
configure is fixed with ``ros2 param set`` and retried without a restart; once configured, only the run-time
parameters change (cleanup first for the others). Uses the ``rclpy.lifecycle`` API of Humble.
"""

from __future__ import annotations

from typing import Any

from rclpy.lifecycle import LifecycleNode, State, TransitionCallbackReturn

from moose_ros.errors import MooseError
from moose_ros.ros.core import MooseCore

__all__ = ["MooseLifecycleNode"]


class MooseLifecycleNode(LifecycleNode):
    """:class:`~moose_ros.ros.node.MooseNode`'s work (one :class:`~moose_ros.ros.core.MooseCore`), one lifecycle
    transition at a time."""

    def __init__(self, *, argv: list[str] | None = None, **kwargs: Any) -> None:
        super().__init__("moose_node", **kwargs)
        self.core = MooseCore(self, argv, managed=True)
        self.get_logger().info("managed node, unconfigured: configure loads the model, activate starts processing")

    def on_configure(self, state: State) -> TransitionCallbackReturn:
        try:
            self.core.load()
        except MooseError:  # already logged as fatal, naming the parameter or file
            self.core.unload()
            return TransitionCallbackReturn.FAILURE
        self.core.open_outputs()
        self.core.log_ready()
        return TransitionCallbackReturn.SUCCESS

    def on_activate(self, state: State) -> TransitionCallbackReturn:
        self.core.open_inputs()
        self.get_logger().info("active: subscribed, processing")
        return TransitionCallbackReturn.SUCCESS

    def on_deactivate(self, state: State) -> TransitionCallbackReturn:
        self.core.close_inputs()
        self.get_logger().info("inactive: unsubscribed, nothing published")
        return TransitionCallbackReturn.SUCCESS

    def on_cleanup(self, state: State) -> TransitionCallbackReturn:
        self.core.close_outputs()
        self.core.unload()
        self.get_logger().info("unconfigured: backend released")
        return TransitionCallbackReturn.SUCCESS

    def on_shutdown(self, state: State) -> TransitionCallbackReturn:
        self.core.close()
        return TransitionCallbackReturn.SUCCESS

    def close(self, *, destroy: bool = True) -> None:
        """Stop inputs and worker, release the backend and destroy the node (``destroy=False``: after a stop
        signal, only stop and release; see :meth:`~moose_ros.ros.core.MooseCore.close`)."""
        self.core.close(destroy=destroy)
        if destroy:
            self.destroy_node()
