"""Real parts for tests and benchmarks, split by job.

- :mod:`testkit.databases` — the testing config on a database; fresh, migrated databases;
- :mod:`testkit.factories` — small factories for rows (tests decide on commits);
- :mod:`testkit.seed` — a live drop, more batches and many customers for a race (they commit);
- :mod:`testkit.servers` — the shop under gunicorn or a threaded werkzeug server;
- :mod:`testkit.rawhttp` — HTTP over raw sockets and a logged-in ``ShopSession``;
- :mod:`testkit.bursts` — synchronized bursts of raw requests;
- :mod:`testkit.invariants` — the inventory invariants, checked by SQL after a race.

``bench/`` uses these too, which is why they live outside ``tests/``; pytest fixtures and
in-process clients stay in ``tests/support``.
"""
