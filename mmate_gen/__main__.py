"""``python -m mmate_gen``: the ``mmate-gen`` command."""

import sys

from .entry import main

sys.exit(main())
