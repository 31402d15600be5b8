"""`python -m bodycapture ...`: the same as the `bodycapture` command."""

import sys

from .cli import main

sys.exit(main())
