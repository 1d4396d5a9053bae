"""Start relocalization_node (and optionally RViz).

    ros2 launch seqace_ros relocalization.launch.py map:=/path/to/kitchen.safetensors \
        image:=/camera/image_raw camera_info:=/camera/camera_info rviz:=true

Other parameters come from params_file (default: the installed config/relocalization.yaml).
managed:=true starts the lifecycle variant (managed_relocalization_node) for nav2's lifecycle_manager;
shm_transport:=true (the default) gives the processes of this launch the shipped Fast DDS profile.
"""

import os

from ament_index_python.packages import PackageNotFoundError, get_package_share_directory
from launch import LaunchDescription
from launch.actions import DeclareLaunchArgument, OpaqueFunction, SetEnvironmentVariable
from launch.conditions import IfCondition, UnlessCondition
from launch.substitutions import LaunchConfiguration
from launch_ros.actions import Node

PACKAGE = "seqace_ros"


class MissingPackage(RuntimeError):
    """A package the chosen arguments need is not installed (launch prints the message and stops)."""


def _check_rviz(context):
    # Checked before any process starts: launch would otherwise fail at the rviz2 action and leave
    # the node that was already started running.
    if LaunchConfiguration("rviz").perform(context).strip().lower() in ("true", "1", "yes", "on"):
        try:
            get_package_share_directory("rviz2")
        except PackageNotFoundError:
            raise MissingPackage(
                "rviz:=true but the package 'rviz2' is not installed (apt install ros-$ROS_DISTRO-rviz2); "
                "nothing was started. Run without rviz:=true, or start RViz on another machine with "
                f"-d {os.path.join(get_package_share_directory(PACKAGE), 'config', 'seqace.rviz')}") from None
    return []


def generate_launch_description():
    share = get_package_share_directory(PACKAGE)
    args = [
        DeclareLaunchArgument("map", default_value="", description="map file (.safetensors) from build_map"),
        DeclareLaunchArgument("image", default_value="/camera/image_raw", description="image topic (base name)"),
        DeclareLaunchArgument("camera_info", default_value="/camera/camera_info", description="CameraInfo topic"),
        DeclareLaunchArgument("namespace", default_value="", description="namespace of the node"),
        DeclareLaunchArgument("params_file", default_value=os.path.join(share, "config", "relocalization.yaml"),
                              description="parameters YAML"),
        DeclareLaunchArgument("use_sim_time", default_value="false", description="use /clock (bag playback)"),
        DeclareLaunchArgument("rviz", default_value="false", description="start RViz with config/seqace.rviz"),
        DeclareLaunchArgument("managed", default_value="false",
                              description="start the managed (lifecycle) node: it waits for configure and "
                                          "activate, from nav2's lifecycle_manager or the lifecycle services"),
        DeclareLaunchArgument("shm_transport", default_value="true",
                              description="give the launched processes config/fastdds_shm.xml (16 MB Fast DDS "
                                          "shared memory, so 640x480 images are not lost on one host); the "
                                          "camera driver needs the same profile. false: keep "
                                          "FASTDDS_DEFAULT_PROFILES_FILE as it is"),
    ]
    shm = SetEnvironmentVariable("FASTDDS_DEFAULT_PROFILES_FILE", os.path.join(share, "config", "fastdds_shm.xml"),
                                 condition=IfCondition(LaunchConfiguration("shm_transport")))
    common = dict(
        package=PACKAGE,
        name="relocalization_node",
        namespace=LaunchConfiguration("namespace"),
        output="screen",
        emulate_tty=True,
        parameters=[LaunchConfiguration("params_file"),
                    {"map_path": LaunchConfiguration("map"), "use_sim_time": LaunchConfiguration("use_sim_time")}],
        # With image_transport: compressed the node subscribes to <remapped image>/compressed.
        remappings=[("image", LaunchConfiguration("image")), ("camera_info", LaunchConfiguration("camera_info"))],
    )
    node = Node(executable="relocalization_node", condition=UnlessCondition(LaunchConfiguration("managed")),
                **common)
    managed = Node(executable="managed_relocalization_node", condition=IfCondition(LaunchConfiguration("managed")),
                   **common)
    rviz = Node(
        package="rviz2",
        executable="rviz2",
        name="rviz2",
        arguments=["-d", os.path.join(share, "config", "seqace.rviz")],
        parameters=[{"use_sim_time": LaunchConfiguration("use_sim_time")}],
        condition=IfCondition(LaunchConfiguration("rviz")),
    )
    return LaunchDescription(args + [OpaqueFunction(function=_check_rviz), shm, node, managed, rviz])
