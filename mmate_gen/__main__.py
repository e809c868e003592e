"""``python -m mmate_gen``: the ``mmate-gen`` command."""

import sys

from .cli import main

sys.exit(main())
