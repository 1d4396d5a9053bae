"""Train a map from a ROS 2 bag (runs the build_map executable once, then exits).

    ros2 launch seqace_ros build_map.launch.py bag:=/path/to/recording out:=/path/to/kitchen.safetensors
"""

from launch import LaunchDescription
from launch.actions import DeclareLaunchArgument
from launch.substitutions import LaunchConfiguration
from launch_ros.actions import Node

PACKAGE = "seqace_ros"


def generate_launch_description():
    args = [
        DeclareLaunchArgument("bag", description="bag folder (sqlite3 or mcap) or .mcap file"),
        DeclareLaunchArgument("out", default_value="maps/map.safetensors", description="map file to write"),
        DeclareLaunchArgument("image_topic", default_value="/camera/image_raw", description="image topic"),
        DeclareLaunchArgument("map_frame", default_value="map", description="world frame of the TF tree"),
        DeclareLaunchArgument("profile", default_value="cpu", description="mapping profile: cpu, fast or gpu"),
    ]
    build = Node(
        package=PACKAGE,
        executable="build_map",
        name="build_map",
        output="screen",
        arguments=[LaunchConfiguration("bag"), "--out", LaunchConfiguration("out"),
                   "--image-topic", LaunchConfiguration("image_topic"),
                   "--map-frame", LaunchConfiguration("map_frame"),
                   "--profile", LaunchConfiguration("profile")],
    )
    return LaunchDescription(args + [build])
