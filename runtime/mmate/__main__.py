"""``python -m mmate``: the ``mmate`` command."""

import sys

from ._operations.cli import main

sys.exit(main())
