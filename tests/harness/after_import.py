"""Run a function on a module right after Python has executed it: a post-import hook.

The test faults (tests/harness/faults/) and the bench's loop counter (bench/probe/) both live in
an ``airflow_local_settings`` module, which Airflow imports in every process while it
initialises. The module they patch, ``airflow.jobs.scheduler_job_runner``, cannot be imported
that early (a circular import on Airflow 2.10), so they ask to be called once it is loaded.

Stdlib only and nothing else from this repository: the system tier copies this file (with the
package's empty ``__init__`` files) into the container beside the faults, where the checkout
itself may be hidden from the units (PrivateTmp=yes hides a checkout under /tmp).
"""

import importlib.abc
import importlib.util
import sys
from collections.abc import Callable
from types import ModuleType

SCHEDULER_MODULE = "airflow.jobs.scheduler_job_runner"


class _AfterImport(importlib.abc.MetaPathFinder):
    """Runs ``patch`` on the module ``name`` right after it has been executed, once."""

    def __init__(self, name: str, patch: Callable[[ModuleType], None]) -> None:
        self.name = name
        self.patch = patch

    def find_spec(self, fullname, path, target=None):
        if fullname != self.name:
            return None
        sys.meta_path.remove(self)
        spec = importlib.util.find_spec(fullname)
        exec_module = spec.loader.exec_module

        def exec_then_patch(module):
            exec_module(module)
            self.patch(module)

        spec.loader.exec_module = exec_then_patch
        return spec


def call_after_import(name: str, patch: Callable[[ModuleType], None]) -> None:
    """Call ``patch(module)`` once ``name`` is imported; a second request for ``name`` is ignored."""
    if not any(isinstance(f, _AfterImport) and f.name == name for f in sys.meta_path):
        sys.meta_path.insert(0, _AfterImport(name, patch))
