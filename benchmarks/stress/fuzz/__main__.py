import sys

from benchmarks.stress.fuzz.run import main

sys.exit(main())
