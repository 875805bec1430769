"""The milter wire protocol, sans-IO: bytes in, messages out, and back. No asyncio here."""
