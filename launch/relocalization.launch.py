"""Start relocalization_node (and optionally RViz).

    ros2 launch seqace_ros relocalization.launch.py map:=/path/to/kitchen.safetensors \
        image:=/camera/image_raw camera_info:=/camera/camera_info rviz:=true

Other parameters come from params_file (default: the installed config/relocalization.yaml).
"""

import os

from ament_index_python.packages import get_package_share_directory
from launch import LaunchDescription
from launch.actions import DeclareLaunchArgument
from launch.conditions import IfCondition
from launch.substitutions import LaunchConfiguration
from launch_ros.actions import Node

PACKAGE = "seqace_ros"


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
    ]
    node = Node(
        package=PACKAGE,
        executable="relocalization_node",
        name="relocalization_node",
        namespace=LaunchConfiguration("namespace"),
        output="screen",
        emulate_tty=True,
        parameters=[LaunchConfiguration("params_file"),
                    {"map_path": LaunchConfiguration("map"), "use_sim_time": LaunchConfiguration("use_sim_time")}],
        # With image_transport: compressed the node subscribes to <remapped image>/compressed.
        remappings=[("image", LaunchConfiguration("image")), ("camera_info", LaunchConfiguration("camera_info"))],
    )
    rviz = Node(
        package="rviz2",
        executable="rviz2",
        name="rviz2",
        arguments=["-d", os.path.join(share, "config", "seqace.rviz")],
        parameters=[{"use_sim_time": LaunchConfiguration("use_sim_time")}],
        condition=IfCondition(LaunchConfiguration("rviz")),
    )
    return LaunchDescription(args + [node, rviz])
