"""Reads a Dagster instance for bench/compare.py and prints one JSON object: every run with its
status, times, step starts and materialisations (metadata as plain values).

Imports Dagster only (no project code directly), so it reads the instance of any checkout: run it
with that checkout first on PYTHONPATH (its event-log storage class is loaded from there).

    PYTHONPATH=<checkout> DAGSTER_HOME=<home> python bench/collect_trace.py [--wait ID,ID --timeout S]
"""

from __future__ import annotations

import argparse
import json
import sys
import time


def plain(value: object) -> object:
    v = getattr(value, "value", value)
    return v if isinstance(v, (int, float, str, bool, type(None), list, dict)) else str(v)


def trace(instance) -> dict:
    runs = []
    for rec in instance.get_run_records():
        run = rec.dagster_run
        events = []
        for entry in instance.all_logs(run.run_id):
            ev = entry.dagster_event
            if ev is None:
                continue
            item = {"t": entry.timestamp, "type": ev.event_type_value, "step": ev.step_key}
            if ev.event_type_value == "ASSET_MATERIALIZATION":
                mat = ev.event_specific_data.materialization
                item.update(asset=mat.asset_key.to_user_string(), partition=mat.partition,
                            metadata={k: plain(v) for k, v in mat.metadata.items()})
            events.append(item)
        runs.append({
            "run_id": run.run_id, "status": run.status.value,
            "partition": run.tags.get("dagster/partition") or run.tags.get("dagster/asset_partition_range_start"),
            "start": rec.start_time, "end": rec.end_time, "events": events,
        })
    return {"runs": runs}


def wait_stored(instance, expected: set[str], failing: set[str], timeout: float) -> float:
    """Until every expected video's db_rows is materialised and every `failing` video's run failed."""
    import dagster as dg
    from dagster._core.storage.dagster_run import DagsterRunStatus, RunsFilter

    t0 = time.time()
    while True:
        done = set(instance.get_materialized_partitions(dg.AssetKey("db_rows"))) & expected
        failed = {r.tags.get("dagster/partition") for r in instance.get_runs(RunsFilter(statuses=[DagsterRunStatus.FAILURE]))}
        print(f"progress {len(done)}/{len(expected)} stored, {len(failed & failing)}/{len(failing)} failed as expected",
              file=sys.stderr, flush=True)
        if done == expected and failing <= failed:
            return time.time()
        unexpected = failed - failing
        if unexpected:
            raise SystemExit(f"runs failed: {sorted(x for x in unexpected if x)}")
        if time.time() - t0 > timeout:
            raise SystemExit(f"timeout: {len(done)}/{len(expected)} stored after {timeout:.0f} s")
        time.sleep(2.0)


def main() -> int:
    from dagster import DagsterInstance

    p = argparse.ArgumentParser()
    p.add_argument("--wait", default="", help="comma-separated video ids to wait for")
    p.add_argument("--failing", default="", help="comma-separated video ids whose run must fail")
    p.add_argument("--timeout", type=float, default=3600)
    args = p.parse_args()
    with DagsterInstance.get() as instance:
        finished = None
        if args.wait:
            finished = wait_stored(instance, set(args.wait.split(",")), set(filter(None, args.failing.split(","))), args.timeout)
        out = trace(instance)
        out["finished"] = finished
    print(json.dumps(out))
    return 0


if __name__ == "__main__":
    sys.exit(main())
