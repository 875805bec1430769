from __future__ import annotations

import sys

from spambridge.cli import main

sys.exit(main())
