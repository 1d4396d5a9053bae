"""Build seqace_ros: the Python library, the native RANSAC extension and the ROS 2 share files.

`pip install .` gives the library and the `seqace`, `relocalization_node` and `build_map`
commands; `colcon build` (ament_python) additionally installs the executables into
lib/seqace_ros so that `ros2 run seqace_ros <name>` finds them (see setup.cfg).
"""

import os
import sys
import sysconfig
from glob import glob
from pathlib import Path

from pybind11.setup_helpers import Pybind11Extension, build_ext
from setuptools import find_packages, setup

PACKAGE = "seqace_ros"
HERE = Path(__file__).resolve().parent
# Paths relative to this file, not the current folder: `colcon build --symlink-install` runs
# `setup.py develop` from build/seqace_ros.
NATIVE = HERE / "native"


def eigen_include() -> str:
    """Eigen's header folder: $EIGEN3_INCLUDE_DIR, the system's, or the cmeel-eigen wheel's."""
    candidates = [os.environ.get("EIGEN3_INCLUDE_DIR", "")]
    candidates += ["/usr/include/eigen3", "/usr/local/include/eigen3", "/opt/homebrew/include/eigen3"]
    for base in {sysconfig.get_paths()["purelib"], sysconfig.get_paths()["platlib"], *sys.path}:
        candidates.append(os.path.join(base or "", "cmeel.prefix", "include", "eigen3"))
    for c in candidates:
        if c and os.path.isfile(os.path.join(c, "Eigen", "Core")):
            return c
    raise RuntimeError(
        "Eigen 3 headers not found: install Debian's libeigen3-dev, `pip install cmeel-eigen`, "
        "or set EIGEN3_INCLUDE_DIR")


ext_modules = [
    Pybind11Extension(
        f"{PACKAGE}._native",
        sorted(str(p) for p in (NATIVE / "src").glob("*.cpp")),
        include_dirs=[str(NATIVE / "include"), eigen_include()],
        cxx_std=17,
        extra_compile_args=["-O3", "-DNDEBUG", "-fvisibility=hidden"],
        extra_link_args=["-pthread"],
    )
]


# Keep in step with ROS_RUNTIME in test/ros_support/setup_ros_env.py (a test compares them).
ROS_WHEELS = [
    "ros-rclpy==9.1.2",
    "ros-rmw-fastrtps-cpp==9.3.3",
    "ros-std-msgs==5.5.1",
    "ros-sensor-msgs==5.5.1",
    "ros-geometry-msgs==5.5.1",
    "ros-nav-msgs==5.5.1",
    "ros-std-srvs==5.5.1",
    "ros-visualization-msgs==5.5.1",
    "ros-diagnostic-msgs==5.5.1",
    "ros-ament-index-python==1.11.0",
]


def share(*patterns):
    """Files matching the patterns, relative to this folder (data_files wants relative paths)."""
    files = []
    for p in patterns:
        files += [os.path.relpath(f, HERE) for f in glob(str(HERE / p)) if os.path.isfile(f)]
    return sorted(files)


def pip_requirements() -> list[str]:
    """requirements-pip.txt: the dependencies without a rosdep key (docs/ROS.md installs the same file)."""
    lines = (HERE / "requirements-pip.txt").read_text().splitlines()
    return [s for s in (line.split("#")[0].strip() for line in lines) if s]


setup(
    name=PACKAGE,
    version="0.1.0",
    description="Real-time visual relocalization for ROS 2 by scene coordinate regression (SeqACE/ACE)",
    long_description=(HERE / "README.md").read_text() if (HERE / "README.md").exists() else "",
    long_description_content_type="text/markdown",
    license="Apache-2.0",
    python_requires=">=3.10",
    packages=find_packages(include=[PACKAGE, f"{PACKAGE}.*"]),
    ext_modules=ext_modules,
    cmdclass={"build_ext": build_ext},
    zip_safe=False,
    # The first five have rosdep keys (package.xml); the rest come from requirements-pip.txt.
    # numpy 1.21 is what Ubuntu 22.04 (Humble) ships.
    install_requires=[
        "numpy>=1.21",
        "scipy>=1.8",
        "opencv-python-headless>=4.5",
        "tqdm>=4.60",
        "matplotlib>=3.5",
    ] + pip_requirements(),
    extras_require={
        "test": ["pytest>=7", "poselib>=2.0", "pyyaml>=5.4", "nncf>=2.12"],
        "bench": ["poselib>=2.0", "nncf>=2.12"],
        # precision int8 for the head (OpenVINO backend): NNCF's post-training quantization.
        "int8": ["nncf>=2.12"],
        # ROS 2 kilted from PyPI, for machines without a ROS install (with ROS, use the system's).
        # test/ros_support/setup_ros_env.py installs the same pins and generates tf2_msgs.
        "ros": ROS_WHEELS,
    },
    data_files=[
        ("share/ament_index/resource_index/packages", ["resource/" + PACKAGE]),
        ("share/" + PACKAGE, ["package.xml"]),
        ("share/" + PACKAGE + "/launch", share("launch/*.py")),
        ("share/" + PACKAGE + "/config", share("config/*.yaml", "config/*.rviz", "config/*.xml")),
        ("share/" + PACKAGE + "/maps", share("maps/*.md")),
    ],
    entry_points={
        "console_scripts": [
            "seqace = seqace_ros.cli:main",
            "relocalization_node = seqace_ros.ros.relocalization_node:main",
            "managed_relocalization_node = seqace_ros.ros.managed_node:main",
            "build_map = seqace_ros.ros.build_map:main",
        ],
    },
)
