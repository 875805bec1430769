"""The spamd side, split by job (nothing is imported here, so each part costs only itself):

- endpoints.py  `spamd-socket` entries and `spamd-timeouts` -> typed values (pure)
- protocol.py   SPAMC sans-IO: request bytes out, reply bytes in -> Verdict (import-safe)
- library.py    the one place aiospamc is imported; what of it is used, and why
- transport.py  the socket exchanges (TCP, unix, TLS, host names) with their timeouts
- tls.py        the TLS client context of ssl: entries, every bad file a ConfigError
- hosts.py      per-host state: least-loaded choice, set-asides, PING probes, metrics
- pool.py       SpamdPool: failover, the end timeout, the concurrency cap
"""
