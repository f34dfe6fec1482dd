"""``python -m sampling plan|run|verify|vault ...``"""

import sys

from sampling.cli import main

sys.exit(main(sys.argv[1:]))
