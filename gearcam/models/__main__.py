"""``python -m gearcam.models``: see gearcam.models.cli."""

from __future__ import annotations

import sys

from gearcam.models.cli import main

sys.exit(main())
