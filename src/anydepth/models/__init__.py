"""Pure network modules, configured by frozen dataclasses; no file or network I/O."""
