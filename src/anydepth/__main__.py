"""``python -m anydepth`` runs the command line."""

from anydepth.cli.main import main

main()
