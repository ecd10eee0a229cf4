"""``python -m segdoctor.cli``: the same entry point as the ``segdoctor`` console script."""

import sys

from segdoctor.cli import main

sys.exit(main())
