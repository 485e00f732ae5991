"""How a step fails: what Dagster retries, and what fails once.

Transient causes (a server that answered 5xx/429 or reset the connection, the database unreachable
or gone away mid-step, the model service away for longer than its client waits) are retried by
Dagster with back-off (`RETRY`): the retries show in the run's Gantt chart. Permanent causes (a
404, a web page instead of media, corrupt media, a refused source, an id conflict) fail the step
once (`dg.Failure(allow_retries=False)`) with the cause. A step of a run being cancelled fails at
once too: Dagster would otherwise turn the cancellation's interrupt into a retry.
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager

import dagster as dg

from chaffee_assets.lib.errors import ChaffeeError, DatabaseError, DownloadError, ServiceUnavailable

RETRY = dg.RetryPolicy(max_retries=3, delay=5.0, backoff=dg.Backoff.EXPONENTIAL, jitter=dg.Jitter.PLUS_MINUS)


def is_transient(e: BaseException) -> bool:
    import psycopg

    if isinstance(e, DownloadError):
        return e.transient
    if isinstance(e, DatabaseError):
        return e.transient
    return isinstance(e, ServiceUnavailable | psycopg.OperationalError | ConnectionError)


@contextmanager
def failing_clearly(context: dg.AssetExecutionContext) -> Iterator[None]:
    """Around a step's body: transient causes raised for Dagster to retry, permanent ones as a
    Failure that is not retried, and nothing more once the run is being cancelled."""
    run = context.instance.get_run_by_id(context.run_id)
    if run is not None and run.status == dg.DagsterRunStatus.CANCELING:
        raise dg.Failure("the run is being cancelled", allow_retries=False)
    try:
        yield
    except dg.Failure:
        raise
    except Exception as e:
        if is_transient(e):
            raise
        cause = str(e) if isinstance(e, ChaffeeError) else f"{type(e).__name__}: {e}"
        raise dg.Failure(description=cause, allow_retries=False) from e
