"""Sub-commands of the `manualgrad` CLI, one module each (see `manualgrad.cli`)."""
