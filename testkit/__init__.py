"""What the tests and the benchmarks share: PostgreSQL servers and running apps
(support.py), CALLR's events (callr_events.py, examples/), the CALLR double
(fake_callr.py) and a real handler on loopback (handler_server.py).

Neither tests/ nor bench/ reaches into the other: both import from here
(an import-linter contract in pyproject.toml).
"""
