"""A component whose output file is its journal stream, its native journal entries recorded.

systemd sets JOURNAL_STREAM (device:inode) when stdout is the journal; the entrypoint then sends
native entries (systemd-python) instead of plain lines. A test gives a component's output file
that role, and a ``sitecustomize`` on its PYTHONPATH replaces ``systemd.journal.sendv`` so that
every entry, with the fields journald would get, lands in a JSON-lines file.
"""

from __future__ import annotations

import os
from pathlib import Path

from tests.harness.airflow_env import CHECKOUT, FAULTS

# sitecustomize: systemd.journal.sendv appends each entry to $AFSD_TEST_JOURNAL as one JSON line
RECORD_ENTRIES = """
import json, os, systemd.journal

def sendv(*lines):
    entry = {}
    for line in lines:
        name, _, value = (line.decode(errors="replace") if isinstance(line, bytes) else line).partition("=")
        entry[name] = value
    with open(os.environ["AFSD_TEST_JOURNAL"], "a") as f:
        f.write(json.dumps(entry) + "\\n")

systemd.journal.sendv = sendv
"""


def recording_path(directory: Path) -> Path:
    """DIRECTORY, created, holding the recording sitecustomize: put it first on PYTHONPATH."""
    directory.mkdir()
    (directory / "sitecustomize.py").write_text(RECORD_ENTRIES)
    return directory


def journal_stream_env(output: Path, path: Path, record: Path) -> dict[str, str]:
    """The environment that makes OUTPUT (the component's output file, created here so that its
    inode is known before the start, which reopens it) its journal stream, recording into RECORD,
    with PATH first on its import path."""
    output.touch()
    st = os.stat(output)
    return {
        "JOURNAL_STREAM": f"{st.st_dev}:{st.st_ino}",
        "AFSD_TEST_JOURNAL": str(record),
        "PYTHONPATH": os.pathsep.join((str(path), str(FAULTS), str(CHECKOUT))),
    }
