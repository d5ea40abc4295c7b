"""python -m kql_check (from tools/) or python tools/kql_check: check every shipped KQL query."""

import sys

from kql_check import main

sys.exit(main())
