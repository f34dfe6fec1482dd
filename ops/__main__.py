"""``python -m ops``: the same as the ``makapix-ops`` script (ops.cli.main_entry)."""

from ops.cli import main_entry

main_entry()
