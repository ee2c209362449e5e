"""``python -m fnnbench.claims check FILE ...``: validate claim files (see docs/claims.md).

A command-line shim, like ``fnnbench/__main__.py``: the command lives in
:mod:`fnnbench.cli.check` (it composes the sweep with Hydra through the preflight).
"""

import sys

from fnnbench.cli.check import main

if __name__ == "__main__":
    sys.exit(main())
