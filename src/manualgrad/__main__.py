import sys

from manualgrad.cli import main

sys.exit(main())
