"""bopask_vlm: the model side of bopask (answers, prompts, clients, dataset generation, training,
evaluation). Imports no ROS."""

__version__ = "0.1.0"
