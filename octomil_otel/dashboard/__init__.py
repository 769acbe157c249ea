"""The local Octomil API and Monitoring Dashboard: ``octomil dashboard``.

It receives the events exactly as the hosted API does (``POST /api/v1/telemetry/events``,
``GET /api/v1/auth/whoami``), stores them in SQLite (one file, the default) or ClickHouse
(for volumes one machine's SQLite outgrows), answers the JSON query API under
``/api/v1/query/`` and serves the page at ``/``. It reads exported events only: it never
imports the instrumentation.
"""
