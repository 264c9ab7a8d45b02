"""`python -m dreamlake`: the same as the `dreamlake` command."""

import sys

from ._cli._main import main

sys.exit(main())
