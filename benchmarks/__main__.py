"""``python -m benchmarks``: see `benchmarks._harness.parse_args` or ``--help``."""

import sys

from benchmarks._harness import main

sys.exit(main())
