"""``python -m fnnbench.reproduce``: see :mod:`fnnbench.cli.reproduce`."""

import sys

from fnnbench.cli.reproduce import main

if __name__ == "__main__":
    sys.exit(main())
