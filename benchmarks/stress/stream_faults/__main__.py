import sys

from benchmarks.stress.stream_faults.cli import main

sys.exit(main())
