"""gunicorn's settings for Small Batch, read from the working directory by ``gunicorn wsgi:app``
(flags on the command line win). docs/OPERATIONS.md explains each.

- Shutdown: SIGTERM stops accepting connections and gives requests in flight
  ``graceful_timeout`` seconds to finish before their worker is killed.
- First come, first served: a worker takes a connection only when it can start on it soon
  (``worker_connections``, set from the threads in ``on_starting``), so a crowd the workers
  cannot keep up with waits in the kernel's one listen queue (``backlog``) in the order it
  came, instead of in whichever worker happened to take it; a worker slowed by a few slow
  requests no longer makes the people behind them wait longer than everyone else.
- Metrics: the workers are separate processes, so prometheus_client runs in multiprocess mode
  and keeps each process's numbers in ``PROMETHEUS_MULTIPROC_DIR``; a scrape of any worker adds
  them up. Without the variable a private directory is made here (and removed on exit); set it
  to a directory the worker (``flask shop worker``) shares, on the same host, to see its numbers
  in the same scrape.
"""

import os
import shutil
import sys
import tempfile
from pathlib import Path

graceful_timeout = 30
backlog = 4096  # a crowd waiting its turn; the kernel caps it at net.core.somaxconn
QUEUED = 12  # connections a worker may take beyond those its threads are on

_private_metrics_dir = None
if not os.environ.get("PROMETHEUS_MULTIPROC_DIR"):
    # Set before the app (and prometheus_client) is imported, and inherited by every worker.
    _private_metrics_dir = tempfile.mkdtemp(prefix="smallbatch-metrics-")
    os.environ["PROMETHEUS_MULTIPROC_DIR"] = _private_metrics_dir


def on_starting(server):
    _bound_connections(server.cfg)
    _forget_dead_processes()


def _bound_connections(cfg):
    """Each worker holds at most its threads' connections and ``QUEUED`` more (kept-alive ones
    included), unless ``--worker-connections`` is given. With gunicorn's default (1,000) each
    worker accepts all it can and queues it itself, and a crowd is served in as many orders as
    there are workers."""
    given = " ".join([*sys.argv, os.environ.get("GUNICORN_CMD_ARGS", "")])
    if "--worker-connections" not in given:
        cfg.set("worker_connections", cfg.threads + QUEUED)


def _forget_dead_processes():
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
