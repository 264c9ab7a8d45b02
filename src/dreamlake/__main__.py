"""`python -m dreamlake`: the same as the `dreamlake` command."""

import sys

from ._cli import main

sys.exit(main())
