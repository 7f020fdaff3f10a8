"""Subcommands of the `mmselect` CLI (argument parsing only; the work is done by library calls)."""
