"""``python -m gearcam.bench [--quick] [--out DIR]``."""

import sys

from gearcam.bench.cli import main

sys.exit(main())
