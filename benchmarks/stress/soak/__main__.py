import sys

from benchmarks.stress.soak.run import main

sys.exit(main())
