"""Async engines for the two supported backends, configured the way the store needs.

This module owns URL checks and per-connection settings: on SQLite, WAL, a busy
timeout and explicit BEGIN (IMMEDIATE for writes, so that a read-then-write
transaction never fails half-way on a lock); on PostgreSQL, the search path and
liveness checks. It also owns the one construct that differs by dialect, INSERT ...
ON CONFLICT. It must not run the store's statements.
"""

from __future__ import annotations

from datetime import timedelta
from typing import Any

from sqlalchemy import Table, event
from sqlalchemy.dialects.postgresql import Insert as PostgresInsert
from sqlalchemy.dialects.postgresql import insert as postgres_insert
from sqlalchemy.dialects.sqlite import Insert as SqliteInsert
from sqlalchemy.dialects.sqlite import insert as sqlite_insert
from sqlalchemy.engine import URL, Connection, make_url
from sqlalchemy.ext.asyncio import AsyncEngine, create_async_engine

SQLITE_BUSY_TIMEOUT_MS = 10_000  # how long a writer waits for another before giving up
WRITE_OPTION = "warden_write"  # execution option that marks a write transaction

_ASYNC_DRIVERS = {"sqlite": "sqlite+aiosqlite", "postgresql": "postgresql+asyncpg"}


def async_url(url: str) -> URL:
    """The URL with the async driver Warden ships (`postgresql://` → asyncpg)."""
    parsed = make_url(url)
    backend = parsed.get_backend_name()
    if backend not in _ASYNC_DRIVERS:
        raise ValueError(
            f"unsupported database {backend!r}: use sqlite+aiosqlite:// or postgresql+asyncpg://"
        )
    return parsed.set(drivername=_ASYNC_DRIVERS[backend])


def create_engine(
    url: str,
    *,
    schema: str | None = None,
    stalled_after: timedelta | None = None,
    replica: str | None = None,
) -> AsyncEngine:
    """An engine for `url`; `schema` (PostgreSQL only) holds Warden's tables.

    `stalled_after` (PostgreSQL only): a session that sits in an open transaction this
    long without sending anything is ended by the server, its locks released. Warden's
    transactions never wait on anything but the database, so such a session belongs to
    a replica that was paused or cut off mid-write: its fenced write must not hold the
    lease row (FOR SHARE) against the replica taking over, and never commits.

    `replica` (PostgreSQL only) names the sessions (`application_name`), so that the
    replica taking over a dead or paused one's shards can end its sessions
    (`Store.end_sessions_of`): a session paused mid-statement is not "idle".
    """
    parsed = async_url(url)
    if parsed.get_backend_name() == "sqlite":
        if schema is not None:
            raise ValueError("a schema is a PostgreSQL setting; SQLite keeps one file")
        return _sqlite_engine(parsed)
    return _postgres_engine(parsed, schema, stalled_after, replica)


def writer(engine: AsyncEngine) -> AsyncEngine:
    """The same engine (same pool), marked so that its transactions begin as writes."""
    return engine.execution_options(**{WRITE_OPTION: True})


def _sqlite_engine(url: URL) -> AsyncEngine:
    engine = create_async_engine(url)
    event.listen(engine.sync_engine, "connect", _sqlite_connect)
    event.listen(engine.sync_engine, "begin", _sqlite_begin)
    return engine


def _sqlite_connect(dbapi_connection: Any, _record: Any) -> None:
    # SQLAlchemy, not the sqlite3 module, emits BEGIN: sqlite3's legacy mode skips it
    # before SELECT and DDL, which breaks repeatable reads and transactional migrations.
    dbapi_connection.isolation_level = None
    cursor = dbapi_connection.cursor()
    try:
        # busy_timeout first: switching to WAL takes a lock another process may hold.
        cursor.execute(f"PRAGMA busy_timeout = {SQLITE_BUSY_TIMEOUT_MS}")
        cursor.execute("PRAGMA journal_mode = WAL")
        cursor.execute("PRAGMA foreign_keys = ON")
    finally:
        cursor.close()


def _sqlite_begin(connection: Connection) -> None:
    # A deferred transaction that reads and then writes fails at once (SQLITE_BUSY)
    # if another writer got in between; IMMEDIATE takes the write lock up front.
    write = connection.get_execution_options().get(WRITE_OPTION, False)
    connection.exec_driver_sql("BEGIN IMMEDIATE" if write else "BEGIN")


def _postgres_engine(
    url: URL, schema: str | None, stalled_after: timedelta | None, replica: str | None
) -> AsyncEngine:
    settings = {"application_name": session_name(replica)}
    if schema is not None:
        settings["search_path"] = schema
    if stalled_after is not None:
        milliseconds = max(int(stalled_after.total_seconds() * 1000), 100)
        settings["idle_in_transaction_session_timeout"] = str(milliseconds)
    return create_async_engine(
        url,
        pool_pre_ping=True,  # survive a server restart between cycles
        connect_args={"server_settings": settings},
    )


def session_name(replica: str | None) -> str:
    """The `application_name` of a replica's database sessions (at most 63 bytes)."""
    return f"warden {replica}"[:63] if replica else "warden"


def upsert(table: Table, dialect: str) -> PostgresInsert | SqliteInsert:
    """An INSERT that can take ON CONFLICT clauses: both backends spell them alike."""
    return postgres_insert(table) if dialect == "postgresql" else sqlite_insert(table)
