"""``python -m marinade``: see ``marinade.cli``."""

import sys

from .cli import main

sys.exit(main())
