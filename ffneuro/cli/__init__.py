"""The ``ffneuro`` command line (Typer): commands parse arguments and call one library function."""

from ffneuro.cli.app import app, main

__all__ = ["app", "main"]
