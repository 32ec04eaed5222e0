import sys

from benchmarks.stress.stream_faults.run import main

sys.exit(main())
