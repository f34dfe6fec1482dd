"""``python -m sampling``: the same as the ``makapix-sampling`` script (sampling.cli.main_entry)."""

from sampling.cli import main_entry

main_entry()
