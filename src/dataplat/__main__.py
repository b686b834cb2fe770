import sys

from dataplat.cli import main

sys.exit(main())
