"""``python -m ffneuro.cli``: the same as the ``ffneuro`` command."""

from ffneuro.cli import main

main()
