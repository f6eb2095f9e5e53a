"""``python -m amr_dagster.cli``: the same command line as the ``amr-dagster`` script."""

import sys

from amr_dagster.cli import main

sys.exit(main())
