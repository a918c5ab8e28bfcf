from setuptools import find_packages, setup

package_name = "bopask_vlm"

setup(
    name=package_name,
    version="0.1.0",
    packages=find_packages(exclude=["test"]),
    data_files=[
        ("share/ament_index/resource_index/packages", ["resource/" + package_name]),
        ("share/" + package_name, ["package.xml"]),
    ],
    package_data={"bopask_vlm": ["data/*.json", "data/*.yaml", "train/configs/*.yaml"]},
    include_package_data=True,
    install_requires=["setuptools"],
    zip_safe=True,
    maintainer="bopask developers",
    maintainer_email="bopask@example.org",
    description="BOP-ASK model side: answers, prompts, VLM clients, dataset generation, training, evaluation",
    license="Apache-2.0",
    python_requires=">=3.10",
    entry_points={"console_scripts": ["bopask = bopask_vlm.cli:main"]},
)
