"""Reading a small settings file that another account may have placed: as data, never as a trap.

Root reads such files (an older installation's keys in the airflow user's home, a settings file
copied from another host, /etc/default/airflow): the name may be a symbolic link to somewhere
else, a FIFO that blocks the reader forever, or a huge file. :func:`read` opens without following
a link and without blocking, then checks the file it opened (not whatever the name points at a
moment later) and returns that same file's status, for the caller's own ownership checks.
"""

from __future__ import annotations

import os
import stat

LIMIT = 65536  # bytes: far above any settings file, far below a memory problem


class NotPlain(ValueError):
    """Not a regular file of at most the limit; the message names the path."""


def read(path: str, limit: int = LIMIT) -> tuple[str, os.stat_result]:
    """The text of the regular file at ``path`` (UTF-8, undecodable bytes replaced) and its status.

    Raises FileNotFoundError, another OSError (e.g. ELOOP for a link), or NotPlain.
    """
    fd = os.open(path, os.O_RDONLY | os.O_NOFOLLOW | os.O_NONBLOCK | os.O_CLOEXEC)
    with os.fdopen(fd, "rb") as f:
        info = os.fstat(f.fileno())
        if not stat.S_ISREG(info.st_mode) or info.st_size > limit:
            raise NotPlain(f"{path} is not a regular file of at most {limit} bytes")
        return f.read(limit).decode("utf-8", "replace"), info
