from setuptools import find_packages, setup

package_name = "bopask_sim"

setup(
    name=package_name,
    version="0.1.0",
    packages=find_packages(exclude=["test"]),
    data_files=[
        ("share/ament_index/resource_index/packages", ["resource/" + package_name]),
        ("share/" + package_name, ["package.xml"]),
    ],
    install_requires=["setuptools"],
    zip_safe=True,
    maintainer="bopask developers",
    maintainer_email="bopask@example.org",
    description="BOP-ASK closed-loop evaluation in physics (pybullet): simulated tabletop, RealSense-like camera, "
                "a motion backend behind the pipeline's Planner protocol, physical outcomes, sim-eval",
    license="Apache-2.0",
    python_requires=">=3.10",
    # `bopask sim-eval`: bopask_vlm's CLI discovers subcommands in this entry-point group (it never imports us)
    entry_points={"bopask.commands": ["sim-eval = bopask_sim.cli:main"]},
)
