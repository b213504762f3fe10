"""`python -m sdviz` runs the `sdviz` command (also under `accelerate launch -m sdviz`)."""

import sys

from sdviz.cli import main

sys.exit(main())
