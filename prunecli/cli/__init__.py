"""Thin Typer front end: one file per subcommand, no algorithm code, no top-level torch import."""
