"""``python -m components.runs RUN_FOLDER``: the sentinel of one run (see :mod:`.sentinel`)."""

import sys

from components.runs.sentinel import main

sys.exit(main())
