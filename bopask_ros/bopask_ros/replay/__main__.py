"""``python -m bopask_ros.replay BAG ...``: the same as ``bopask replay`` (see :mod:`bopask_ros.replay.cli`)."""

import sys

from bopask_ros.replay.cli import main

sys.exit(main())
