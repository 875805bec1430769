"""Run spambridge on uvloop's event loop (for the benchmark's uvloop subject).

python -m bench.uvloop_main --milter-socket ... (same arguments as python -m spambridge)
"""

from __future__ import annotations

import asyncio
import sys

import uvloop

from spambridge.cli import main

if __name__ == "__main__":
    # asyncio.run() in spambridge.cli takes its loop from the policy.
    asyncio.set_event_loop_policy(uvloop.EventLoopPolicy())
    sys.exit(main())
