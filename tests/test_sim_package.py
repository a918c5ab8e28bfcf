"""bopask_sim's place in the workspace: pure Python (no ROS import), dependencies pointing one way
(bopask_sim -> bopask_ros core -> bopask_vlm), registered as a ``bopask`` plugin rather than imported."""

from __future__ import annotations

import re
import xml.etree.ElementTree as ET
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]


def _imports(pkg_dir: Path, names: str) -> list[str]:
    pat = re.compile(rf"^\s*(import|from)\s+({names})\b", re.M)
    return [str(p.relative_to(REPO)) for p in pkg_dir.rglob("*.py") if pat.search(p.read_text())]


def test_bopask_sim_imports_no_ros():
    assert _imports(REPO / "bopask_sim", r"rclpy|moveit|moveit_py|tf2_ros|cv_bridge|launch|launch_ros|"
                                         r"bopask_ros\.ros|bopask_msgs|sensor_msgs|geometry_msgs") == []


def test_nothing_imports_bopask_sim():
    assert _imports(REPO / "bopask_vlm", "bopask_sim") == []
    # the ROS-free core never imports it; only the ROS subpackage does, for the node's motion_backend sim
    assert [f for f in _imports(REPO / "bopask_ros", "bopask_sim")
            if not f.startswith("bopask_ros/bopask_ros/ros/")] == []


def test_package_manifest_and_entry_point():
    root = ET.parse(REPO / "bopask_sim" / "package.xml").getroot()
    assert root.get("format") == "3" and root.findtext("name") == "bopask_sim"
    deps = {e.text for e in root.iter("exec_depend")}
    assert {"bopask_ros", "bopask_vlm"} <= deps
    assert root.find("export").findtext("build_type") == "ament_python"
    setup = (REPO / "bopask_sim" / "setup.py").read_text()
    assert '"bopask.commands": ["sim-eval = bopask_sim.cli:main"]' in setup
    from bopask_vlm.cli import PLUGIN_GROUP

    assert PLUGIN_GROUP == "bopask.commands"
    assert "pybullet==" in (REPO / "requirements.txt").read_text()
