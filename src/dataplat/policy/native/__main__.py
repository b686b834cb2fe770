"""``python -m dataplat.policy.native``."""

import sys

from dataplat.policy.native import main

sys.exit(main())
