"""`python -m bench`: the whole installation beside what users run instead (bench/installation.py)."""

import sys

from bench.installation import main

sys.exit(main())
