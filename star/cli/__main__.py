"""``python -m star.cli`` runs the ``star`` command."""

from star.cli.main import main

main()
