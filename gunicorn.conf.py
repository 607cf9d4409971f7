"""gunicorn's settings for Small Batch, read from the working directory by ``gunicorn wsgi:app``
(flags on the command line win). docs/OPERATIONS.md explains each.

- Shutdown: SIGTERM stops accepting connections and gives requests in flight
  ``graceful_timeout`` seconds to finish before their worker is killed.
- Metrics: the workers are separate processes, so prometheus_client runs in multiprocess mode
  and keeps each process's numbers in ``PROMETHEUS_MULTIPROC_DIR``; a scrape of any worker adds
  them up. Without the variable a private directory is made here (and removed on exit); set it
  to a directory the worker (``flask shop worker``) shares, on the same host, to see its numbers
  in the same scrape.
"""

import os
import shutil
import tempfile
from pathlib import Path

graceful_timeout = 30

_private_metrics_dir = None
if not os.environ.get("PROMETHEUS_MULTIPROC_DIR"):
    # Set before the app (and prometheus_client) is imported, and inherited by every worker.
    _private_metrics_dir = tempfile.mkdtemp(prefix="smallbatch-metrics-")
    os.environ["PROMETHEUS_MULTIPROC_DIR"] = _private_metrics_dir


def on_starting(server):
    """Forget the files of processes that are gone (an earlier run's): their counts restart."""
    directory = Path(os.environ["PROMETHEUS_MULTIPROC_DIR"])
    directory.mkdir(parents=True, exist_ok=True)
    for path in directory.glob("*.db"):
        pid = path.stem.rpartition("_")[2]
        if pid.isdigit() and not _alive(int(pid)):
            path.unlink(missing_ok=True)


def child_exit(server, worker):
    """A worker that exited no longer counts in the live gauges (pool connections)."""
    from prometheus_client import multiprocess

    multiprocess.mark_process_dead(worker.pid)


def on_exit(server):
    if _private_metrics_dir is not None:
        shutil.rmtree(_private_metrics_dir, ignore_errors=True)


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True
