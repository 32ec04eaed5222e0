import sys

from benchmarks.stress.fuzz.cli import main

sys.exit(main())
