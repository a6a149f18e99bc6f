"""Subcommands of the ``orbitwatch`` CLI, one module each (see orbitwatch.cli)."""
