"""bopask_sim: closed-loop evaluation of BOP-ASK answers in physics (pybullet, CPU, no ROS import)."""
