"""``python -m ichseg`` is the ``ichseg`` command."""

import sys

from ichseg.cli import main

if __name__ == "__main__":
    sys.exit(main())
