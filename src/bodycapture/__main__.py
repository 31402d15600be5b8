"""`python -m bodycapture ...`: the same as the `bodycapture` command."""

from .cli import run

run()
