from glob import glob

from setuptools import find_packages, setup

package_name = "bopask_ros"

setup(
    name=package_name,
    version="0.1.0",
    packages=find_packages(exclude=["test"]),
    data_files=[
        ("share/ament_index/resource_index/packages", ["resource/" + package_name]),
        ("share/" + package_name, ["package.xml"]),
        ("share/" + package_name + "/launch", glob("launch/*.launch.py")),
        ("share/" + package_name + "/config", glob("config/*.yaml") + glob("config/*.rviz")),
        ("share/" + package_name + "/urdf", glob("urdf/*.xacro") + glob("urdf/*.urdf")),
    ],
    install_requires=["setuptools"],
    zip_safe=True,
    maintainer="bopask developers",
    maintainer_email="bopask@example.org",
    description="BOP-ASK robot side: lifting VLM answers to 3D, task pipeline, rosbag replay, ROS 2 node",
    license="Apache-2.0",
    python_requires=">=3.10",
    entry_points={
        "console_scripts": [
            "bopask_node = bopask_ros.ros.node:main",
            "bopask_demo = bopask_ros.replay.demo:main",
        ],
        # `bopask replay`: bopask_vlm's CLI discovers subcommands in this entry-point group (it never imports us)
        "bopask.commands": ["replay = bopask_ros.replay.cli:main", "goal = bopask_ros.ros.goal_cli:main"],
    },
)
