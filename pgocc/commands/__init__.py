"""Subcommands of the pgocc CLI, one module each (see pgocc.cli.COMMANDS)."""
