"""``python -m sampling plan|run|verify|vault ...``

SIGTERM is handled like Ctrl-C: the statements running on the servers are cancelled (not left
running after the process is gone), the target transaction rolls back, and the exit code is 130.
"""

import sys

from sampling.cli import main
from sampling.session import terminate_as_interrupt

try:
    with terminate_as_interrupt():
        status = main(sys.argv[1:])
except KeyboardInterrupt:
    print("interrupted: the servers' statements were cancelled, the target rolled back", file=sys.stderr)
    status = 130
sys.exit(status)
