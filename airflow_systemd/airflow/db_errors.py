"""Which exceptions mean "the metadata database is unreachable", by name and wording.

Stdlib only, so that the lifecycle can classify a crash without importing SQLAlchemy, and the
start-up wait can tell a retry-worthy error from one no wait can fix.
"""

from __future__ import annotations

import re

# OperationalErrors a retry cannot fix (PostgreSQL and MySQL wording).
PERMANENT_ERRORS = re.compile(
    r"password authentication failed|authentication failed|no pg_hba\.conf entry"
    r"|database \S+ does not exist|role \S+ does not exist|Access denied for user|Unknown database",
    re.IGNORECASE,
)

# The DB-API's classes for a lost or refused connection, as SQLAlchemy wraps them
# (sqlalchemy.exc.OperationalError / InterfaceError) and as drivers raise them (psycopg2's,
# MySQLdb's): matched by name, the way the lifecycle matches configuration errors.
CONNECTION_ERROR_NAMES = frozenset({"OperationalError", "InterfaceError"})


def first_line(exc: BaseException) -> str:
    """The driver's own line: SQLAlchemy appends "(Background on this error at: ...)" and the SQL."""
    text = str(getattr(exc, "orig", None) or exc)
    return next((line.strip() for line in text.splitlines() if line.strip()), type(exc).__name__)


def unreachable_reason(exc: BaseException | None) -> str | None:
    """The driver's words if ``exc``, or an exception it was raised from, is a lost or refused
    database connection that a retry can fix; None otherwise.

    A running component whose database goes away fails with such an error. Its failure then has
    the same cause as the start-up wait's "database unreachable" events, so that an outage under
    every service is one incident (alert/incident.py), not one per exception type.
    """
    seen = set()
    while exc is not None and id(exc) not in seen:
        seen.add(id(exc))
        if any(cls.__name__ in CONNECTION_ERROR_NAMES for cls in type(exc).__mro__):
            reason = first_line(exc)
            return None if PERMANENT_ERRORS.search(reason) else reason
        exc = exc.__cause__ or exc.__context__
    return None
