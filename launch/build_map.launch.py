"""Train a map from a ROS 2 bag (runs the build_map executable once, then exits).

    ros2 launch seqace_ros build_map.launch.py bag:=/path/to/recording out:=/path/to/kitchen.safetensors
    ros2 launch seqace_ros build_map.launch.py bag:=rec out:=rec.safetensors options:="--stride 2 --iterations 8000"
"""

import shlex

from launch import LaunchDescription
from launch.actions import DeclareLaunchArgument, OpaqueFunction
from launch.substitutions import LaunchConfiguration
from launch_ros.actions import Node

PACKAGE = "seqace_ros"


def _build_map(context):
    def arg(name):
        return LaunchConfiguration(name).perform(context)

    arguments = [arg("bag"), "--out", arg("out"), "--image-topic", arg("image_topic"),
                 "--map-frame", arg("map_frame"), "--profile", arg("profile")]
    # One launch argument for any further build_map option (`build_map --help` lists them).
    arguments += shlex.split(arg("options"))
    return [Node(package=PACKAGE, executable="build_map", name="build_map", output="screen", arguments=arguments)]


def generate_launch_description():
    args = [
        DeclareLaunchArgument("bag", description="bag folder (sqlite3 or mcap) or .mcap file"),
        DeclareLaunchArgument("out", default_value="maps/map.safetensors", description="map file to write"),
        DeclareLaunchArgument("image_topic", default_value="/camera/image_raw", description="image topic"),
        DeclareLaunchArgument("map_frame", default_value="map", description="world frame of the TF tree"),
        DeclareLaunchArgument("profile", default_value="cpu", description="mapping profile: cpu, fast, quality or gpu"),
        DeclareLaunchArgument("options", default_value="",
                              description="further build_map options, as on its command line "
                                          "(e.g. \"--stride 2 --iterations 8000\")"),
    ]
    return LaunchDescription(args + [OpaqueFunction(function=_build_map)])
