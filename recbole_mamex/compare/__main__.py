"""``python -m recbole_mamex.compare``."""

import sys

from recbole_mamex.compare.cli import main

sys.exit(main())
