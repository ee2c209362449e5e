"""``python -m fnnbench [overrides]``: see :mod:`fnnbench.cli.main`."""

import sys

from fnnbench.cli.main import main

if __name__ == "__main__":
    sys.exit(main())
