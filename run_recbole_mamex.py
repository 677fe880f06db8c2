"""Train and evaluate a model on a RecBole dataset; see ``--help`` and README.md."""

import sys

from recbole_mamex.cli import main

if __name__ == "__main__":
    sys.exit(main())
