"""`python -m services.apps.cli`: the same as the `stylefinder` command."""

from services.apps.cli import main

main()
