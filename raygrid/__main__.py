"""``python -m raygrid``: the ``raygrid`` command."""

import sys

from raygrid.cli.main import main

sys.exit(main())
