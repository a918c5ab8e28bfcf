"""Motion: the safety envelope, the motion steps of each task, and the runner that executes them against a planner."""
