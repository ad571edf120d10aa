"""``python -m calibration.groundtruth``: see :mod:`calibration.groundtruth.run`."""

import sys

from calibration.groundtruth.run import main

sys.exit(main())
