"""managed_relocalization_node: relocalization_node as a managed (lifecycle) node, as nav2's amcl is.

nav2's lifecycle_manager (or any client of the lifecycle services) brings it up with the rest of a
navigation stack:

- configure: reads the parameters, creates publishers, subscriptions and services, loads the map
  (fails, back to unconfigured, when there is no map it can load);
- activate: publishes the map cloud and from then on answers images (pose, TF, path, diagnostics);
- deactivate: images are ignored and nothing is published; the map stays loaded;
- cleanup: frees the map, the worker thread and every topic and service; shutdown does the same.

It is the plain node's code (RelocalizationNode) under rclpy's LifecycleNode: the node's setup runs at
configure instead of in the constructor, its publishers become lifecycle publishers, and the entities
it creates are remembered so that cleanup can destroy them.

    ros2 run seqace_ros managed_relocalization_node --ros-args --params-file config/relocalization.yaml
    ros2 launch seqace_ros relocalization.launch.py managed:=true map:=...
"""

from __future__ import annotations

import threading

from rclpy.lifecycle import LifecycleNode, LifecycleState, TransitionCallbackReturn

from . import messages as M
from .relocalization_node import NODE_NAME, RelocalizationNode
from .shutdown import run_node


class ManagedRelocalizationNode(RelocalizationNode, LifecycleNode):
    """RelocalizationNode whose setup waits for configure and whose output waits for activate."""

    _tracking = False  # Node.__init__ creates publishers before our __init__ body runs

    def __init__(self, **kwargs):
        # Not RelocalizationNode.__init__: its setup is what configure does.
        LifecycleNode.__init__(self, NODE_NAME, **kwargs)
        self._active = threading.Event()
        self._configured = False
        self._tracking = False
        self._entities: list[tuple[str, object]] = []
        # Declared now, so that the parameters can be listed and set before configure (which reads them).
        self._declare_parameters()

    # ------------------------------------------------------------ entity tracking (for cleanup)
    def declare_parameter(self, name, value=None, descriptor=None, ignore_override=False):
        # configure runs the plain node's declarations again: keep what is declared (and its value).
        if self.has_parameter(name):
            return self.get_parameter(name)
        return super().declare_parameter(name, value, descriptor, ignore_override)

    def _track(self, kind: str, entity):
        if self._tracking:
            self._entities.append((kind, entity))
        return entity

    def create_publisher(self, msg_type, topic, qos_profile, **kwargs):
        if not self._tracking:
            return super().create_publisher(msg_type, topic, qos_profile, **kwargs)
        # Lifecycle publishers drop messages unless the node is active (TF broadcasters included).
        return self._track("publisher", self.create_lifecycle_publisher(msg_type, topic, qos_profile, **kwargs))

    def create_subscription(self, *args, **kwargs):
        return self._track("subscription", super().create_subscription(*args, **kwargs))

    def create_service(self, *args, **kwargs):
        return self._track("service", super().create_service(*args, **kwargs))

    def create_timer(self, *args, **kwargs):
        return self._track("timer", super().create_timer(*args, **kwargs))

    def add_on_set_parameters_callback(self, callback):
        self._track("parameters_callback", callback)
        return super().add_on_set_parameters_callback(callback)

    def _destroy_entities(self) -> None:
        destroy = {"publisher": self.destroy_lifecycle_publisher, "subscription": self.destroy_subscription,
                   "service": self.destroy_service, "timer": self.destroy_timer,
                   "parameters_callback": self.remove_on_set_parameters_callback}
        for kind, entity in reversed(self._entities):
            try:
                destroy[kind](entity)
            except (ValueError, KeyError):
                pass  # already gone (a timer the node replaced itself)
        self._entities.clear()

    # ------------------------------------------------------------ behaviour while inactive
    def _on_image(self, msg) -> None:
        if self._active.is_set():
            super()._on_image(msg)

    # ------------------------------------------------------------ transitions
    def on_configure(self, state: LifecycleState) -> TransitionCallbackReturn:
        self._tracking = True
        try:
            self._setup()
        except Exception as exc:  # a failed configure must leave nothing half made
            self.get_logger().error(f"configure failed: {type(exc).__name__}: {exc}")
            self._release()
            return TransitionCallbackReturn.FAILURE
        self._configured = True
        if not self.engine.ready:
            self.get_logger().error(
                f"configure failed: no map loaded from map_path {self.p['map_path']!r}; set map_path and "
                "configure again")
            self._release()
            return TransitionCallbackReturn.FAILURE
        self.get_logger().info(f"configured: map {self.engine.map_path}")
        return super().on_configure(state)

    def on_activate(self, state: LifecycleState) -> TransitionCallbackReturn:
        result = super().on_activate(state)  # enables the lifecycle publishers
        if result != TransitionCallbackReturn.SUCCESS:
            return result
        # The latched cloud sent while loading went nowhere (the publisher was disabled).
        self.pub_cloud.publish(M.point_cloud(self.engine.scene_points(), self.p["map_frame"],
                                             self.get_clock().now().nanoseconds))
        self._active.set()
        self.get_logger().info("active: answering images")
        return TransitionCallbackReturn.SUCCESS

    def on_deactivate(self, state: LifecycleState) -> TransitionCallbackReturn:
        self._active.clear()
        self.get_logger().info("inactive: images are ignored")
        return super().on_deactivate(state)

    def on_cleanup(self, state: LifecycleState) -> TransitionCallbackReturn:
        self._release()
        self.get_logger().info("cleaned up: map and topics released")
        return TransitionCallbackReturn.SUCCESS

    def on_shutdown(self, state: LifecycleState) -> TransitionCallbackReturn:
        self._release()
        return TransitionCallbackReturn.SUCCESS

    def on_error(self, state: LifecycleState) -> TransitionCallbackReturn:
        self._release()
        return TransitionCallbackReturn.SUCCESS

    def _release(self) -> None:
        """Stop the worker, destroy what configure created and drop the map (idempotent)."""
        self._active.clear()
        if getattr(self, "_worker", None) is not None:
            RelocalizationNode.shutdown(self)
            self._worker = None
        self._destroy_entities()
        self._tracking = False
        self._configured = False
        self.engine = None  # the map and the network go with it
        self.tf_in = self.tf_out = None

    @property
    def active(self) -> bool:
        return self._active.is_set()


def main(args: list[str] | None = None) -> None:
    run_node(ManagedRelocalizationNode, lambda node: node._release(), args)


if __name__ == "__main__":
    main()
