"""The ``anydepth`` command line."""
