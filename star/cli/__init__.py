"""The ``star`` command line."""
