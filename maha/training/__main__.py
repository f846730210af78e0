"""``python -m maha.training``: the trainer's command line (see :mod:`maha.training.cli`)."""

import sys

from .cli import main

sys.exit(main())
