"""``python -m components.validation --dataset DIR [--params FILE] [--out DIR]``."""

import sys

from components.validation.cli import main

sys.exit(main())
