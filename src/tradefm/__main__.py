"""``python -m tradefm``: the ``tradefm`` command."""

import sys

from .cli import main

sys.exit(main())
