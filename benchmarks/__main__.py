"""``python -m benchmarks``: run the scenarios, print a table, write benchmarks/results.json.

Runs against Azurite (scenarios 2-4) each happen in a fresh subprocess with a fresh Azurite,
so that each reports its own peak RSS.
"""

from __future__ import annotations

import argparse
import datetime as dt
import json
import os
import platform
import subprocess
import sys
import tempfile
import time
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from benchmarks import core

ROOT = Path(__file__).resolve().parent.parent
RESULTS = Path(__file__).resolve().parent / "results.json"
SCENARIOS = ("parse", "e2e", "naive", "scale", "subscriptions", "reports", "compare")

TARGET_PARSE_FOLD = 150_000
TARGET_END_TO_END = 30_000
TARGET_TEN_SUBSCRIPTIONS = 20_000
TARGET_FORTY_SUBSCRIPTIONS = 8_000
TARGET_RATIO = 50
TARGET_REPORT_SECONDS = 20
TARGET_REPORT_MIB = 2048


@dataclass(frozen=True)
class Plan:
    """How big each scenario is: a full run, or ``--quick`` for a smoke run."""

    core_events: int
    core_rounds: int
    e2e_events: int
    naive_events: int
    scale_sizes: tuple[int, ...]
    subscription_counts: tuple[int, ...]
    subscription_events: int
    report_size: tuple[int, int, int]
    """(subscriptions, models, days) of the report scenario's ledger."""

    @classmethod
    def full(cls, events: int | None) -> Plan:
        return cls(
            core_events=50_000,
            core_rounds=3,
            e2e_events=events or 200_000,
            naive_events=5_000,
            scale_sizes=(50_000, 200_000, 1_000_000),
            subscription_counts=(10, 40, 1_000, 10_000),
            subscription_events=50_000,
            report_size=(10_000, 20, 31),
        )

    @classmethod
    def quick(cls, events: int | None) -> Plan:
        return cls(
            core_events=2_000,
            core_rounds=1,
            e2e_events=events or 5_000,
            naive_events=300,
            scale_sizes=(5_000, 10_000),
            subscription_counts=(10, 40, 1_000),
            subscription_events=5_000,
            report_size=(100, 5, 31),
        )


def quick_parse_fold() -> list[dict[str, Any]]:
    """Scenario 1 at ``--quick`` size (what the smoke test runs)."""
    plan = Plan.quick(None)
    return core.run(plan.core_events, rounds=plan.core_rounds)


class Runs:
    """Runs against Azurite, each in a child process, remembered so no run is made twice.

    A run that also timed the naive baseline serves a request for the same run without it.
    """

    def __init__(self) -> None:
        self._done: dict[tuple[int, int, int], dict[str, Any]] = {}

    def get(self, *, events: int, batch_size: int, subscriptions: int, naive_events: int = 0) -> dict[str, Any]:
        key = (events, batch_size, subscriptions)
        done = self._done.get(key)
        if done is None or (naive_events and "naive" not in done):
            spec = {"events": events, "batch_size": batch_size, "subscriptions": subscriptions}
            if naive_events:
                spec["naive_events"] = naive_events
            done = self._done[key] = _child(spec)
        return done


def _child(spec: dict[str, Any], root: Path = ROOT) -> dict[str, Any]:
    label = ", ".join(f"{name}={value}" for name, value in spec.items())
    where = "" if root == ROOT else f" (code in {root})"
    print(f"  running in a fresh process{where}: {label} …", file=sys.stderr, flush=True)
    with tempfile.TemporaryDirectory(prefix="bench-") as folder:
        output = Path(folder) / "result.json"
        command = [sys.executable, "-m", "benchmarks", "--child", json.dumps(spec), "--output", str(output)]
        env = {**os.environ, "PYTHONPATH": str(root)}
        subprocess.run(command, check=True, cwd=root, env=env)
        result: dict[str, Any] = json.loads(output.read_text())
    return result


def _run_child(spec: str, output: Path) -> None:
    from benchmarks import endtoend, reports

    options = json.loads(spec)
    if "report" in options:
        output.write_text(json.dumps(reports.run(*options["report"]), indent=2))
        return
    result = endtoend.run(
        options["events"],
        batch_size=options.get("batch_size", 1000),
        subscriptions=options.get("subscriptions", 10),
        naive_events=options.get("naive_events", 0),
    )
    output.write_text(json.dumps(result, indent=2))


def machine() -> dict[str, Any]:
    model = "unknown"
    for line in Path("/proc/cpuinfo").read_text().splitlines():
        if line.startswith("model name"):
            model = line.split(":", 1)[1].strip()
            break
    return {
        "nproc": os.cpu_count(),
        "cpu_model": model,
        "python": platform.python_version(),
        "platform": platform.platform(),
    }


COMPARED = ("events_per_s", "function_events_per_s", "python_cpu_seconds", "azurite_cpu_seconds")


def compare(plan: Plan, baseline: Path) -> list[dict[str, Any]]:
    """Each subscription count run with the code in ``baseline`` and then with this code, back to
    back on fresh Azurites, so that both see the same machine load; ratios are new ÷ old."""
    rows = []
    for count in plan.subscription_counts:
        spec = {"events": plan.subscription_events, "batch_size": 1000, "subscriptions": count}
        old, new = _child(spec, baseline), _child(spec)
        row: dict[str, Any] = {"subscriptions": count, "events": spec["events"], "old": old, "new": new}
        for name in COMPARED:
            if old.get(name) and new.get(name):
                row[f"{name}_ratio"] = round(new[name] / old[name], 2)
        rows.append(row)
    return rows


def run(scenarios: Sequence[str], plan: Plan, baseline: Path | None = None) -> dict[str, Any]:
    results: dict[str, Any] = {}
    runs = Runs()
    if "parse" in scenarios:
        print("scenario 1: parse + fold, no I/O …", file=sys.stderr, flush=True)
        results["parse_fold"] = core.run(plan.core_events, rounds=plan.core_rounds)
    main_spec = {"events": plan.e2e_events, "batch_size": 1000, "subscriptions": 10}
    if "e2e" in scenarios or "naive" in scenarios:
        print("scenarios 2-3: the registered function on Azurite, and the naive baseline …", file=sys.stderr)
        main = runs.get(**main_spec, naive_events=plan.naive_events)
        if "e2e" in scenarios:
            small = runs.get(events=plan.e2e_events, batch_size=100, subscriptions=10)
            results["end_to_end"] = [small, _strip(main)]
        if "naive" in scenarios:
            naive = dict(main["naive"])
            if main.get("events_per_s") and naive.get("events_per_s"):
                naive["end_to_end_events_per_s"] = main["events_per_s"]
                naive["ratio"] = round(main["events_per_s"] / naive["events_per_s"], 1)
                naive["function_only_ratio"] = round(main["function_events_per_s"] / naive["events_per_s"], 1)
            results["naive"] = naive
    if "scale" in scenarios:
        print("scenario 4: growth with events …", file=sys.stderr)
        results["scale_events"] = [
            _strip(runs.get(events=size, batch_size=1000, subscriptions=10)) for size in plan.scale_sizes
        ]
    if "subscriptions" in scenarios:
        print("scenario 4: growth with distinct subscriptions …", file=sys.stderr)
        results["scale_subscriptions"] = [
            _strip(runs.get(events=plan.subscription_events, batch_size=1000, subscriptions=count))
            for count in plan.subscription_counts
        ]
    if "reports" in scenarios:
        print("scenario 5: a month's report in every format …", file=sys.stderr)
        results["report"] = _child({"report": list(plan.report_size)})
    if "compare" in scenarios and baseline is not None:
        print(f"scenario 6: back to back against the code in {baseline} …", file=sys.stderr)
        results["comparison"] = compare(plan, baseline)
    return results


def _strip(result: dict[str, Any]) -> dict[str, Any]:
    return {k: v for k, v in result.items() if k != "naive"}


def targets(results: dict[str, Any]) -> list[dict[str, Any]]:
    """Each target with the measured value and whether it was met."""
    checks: list[dict[str, Any]] = []
    mixed = [row for row in results.get("parse_fold", []) if row["shape"] == core.MIXED]
    if mixed:
        value = mixed[0]["parse_fold_events_per_s"]
        wanted = f">= {TARGET_PARSE_FOLD}"
        checks.append(_check("parse + fold, mixed shapes, events/s", value, wanted, value >= TARGET_PARSE_FOLD))
    thousand = [row for row in results.get("end_to_end", []) if row["batch_size"] == 1000]
    if thousand:
        row = thousand[0]
        value = row["events_per_s"]
        wanted = f">= {TARGET_END_TO_END}"
        checks.append(_check("end to end, batches of 1,000, events/s", value, wanted, value >= TARGET_END_TO_END))
        value = row["max_transactions_per_slice"]
        checks.append(_check("Table transactions per touched slice per batch (max)", value, "<= 1", value <= 1))
        value = row["steady_reads"]
        checks.append(_check("reads in steady state", value, "== 0", value == 0))
    for row in results.get("scale_subscriptions", []):
        floor = {10: TARGET_TEN_SUBSCRIPTIONS, 40: TARGET_FORTY_SUBSCRIPTIONS}.get(row["subscriptions"])
        if floor is not None and row["events"] >= 50_000:
            label = f"end to end, {row['subscriptions']} subscriptions, batches of 1,000, events/s"
            checks.append(_check(label, row["events_per_s"], f">= {floor}", row["events_per_s"] >= floor))
        value, bound = row["transactions_per_batch"], row["transaction_bound_per_batch"]
        label = f"transactions per batch, {row['subscriptions']:,} subscriptions"
        checks.append(_check(label, value, f"<= {bound} (⌈aggregates ÷ 99⌉ + slices)", value <= bound))
    naive = results.get("naive", {})
    if "ratio" in naive:
        ratio = naive["ratio"]
        checks.append(_check("end to end / naive baseline", ratio, f">= {TARGET_RATIO}", ratio >= TARGET_RATIO))
    sizes = results.get("scale_events", [])
    if sizes and sizes[-1]["rss_mib_at_50k"] is not None:
        last = sizes[-1]
        growth = round(last["rss_mib_end"] - last["rss_mib_at_50k"], 1)
        label = f"RSS growth from 50,000 to {last['events']:,} events in one run, MiB"
        checks.append(_check(label, growth, "flat (< 5% of RSS)", growth < 0.05 * last["rss_mib_at_50k"]))
    report = results.get("report")
    if report:
        label = f"report for {report['subscriptions']:,} subscriptions, every format, seconds"
        value = report["seconds_total"]
        checks.append(_check(label, value, f"<= {TARGET_REPORT_SECONDS}", value <= TARGET_REPORT_SECONDS))
        value = report["peak_rss_mib"]
        checks.append(_check("report peak RSS, MiB", value, f"<= {TARGET_REPORT_MIB}", value <= TARGET_REPORT_MIB))
    return checks


def _check(name: str, value: Any, target: str, met: bool) -> dict[str, Any]:
    return {"target": name, "measured": value, "wanted": target, "met": met}


def _table(headers: Sequence[str], rows: Sequence[Sequence[Any]]) -> str:
    cells = [[_cell(value) for value in row] for row in rows]
    widths = [max(len(header), *(len(row[i]) for row in cells)) for i, header in enumerate(headers)]
    lines = [
        " | ".join(header.ljust(width) for header, width in zip(headers, widths, strict=True)),
        "-|-".join("-" * width for width in widths),
    ]
    lines += [" | ".join(cell.rjust(width) for cell, width in zip(row, widths, strict=True)) for row in cells]
    return "\n".join(lines)


def _cell(value: Any) -> str:
    if isinstance(value, bool):
        return "yes" if value else "NO"
    if isinstance(value, int):
        return f"{value:,}"
    if isinstance(value, float):
        return f"{value:,.3f}" if abs(value) < 1 else f"{value:,.1f}"
    return "-" if value is None else str(value)


def render(results: dict[str, Any]) -> str:
    parts: list[str] = []
    if "parse_fold" in results:
        parts.append("1. Parse and parse + fold (in-memory store, no I/O), one core, CPU time")
        parts.append(
            _table(
                ["shape", "events", "bytes min/mean/max", "parse ev/s", "parse+fold ev/s", "applied", "in ledger"],
                [
                    [
                        row["shape"],
                        row["generated"],
                        f"{row['body_bytes_min']}/{row['body_bytes_mean']}/{row['body_bytes_max']}",
                        row["parse_events_per_s"],
                        row["parse_fold_events_per_s"],
                        row["applied"],
                        row["requests_in_ledger"],
                    ]
                    for row in results["parse_fold"]
                ],
            )
        )
    runs = [("2", row) for row in results.get("end_to_end", [])]
    runs += [("4 events", row) for row in results.get("scale_events", [])]
    runs += [("4 subscriptions", row) for row in results.get("scale_subscriptions", [])]
    if runs:
        parts.append("\n2/4. The registered function on Azurite (host-shaped batches, 4 partitions)")
        parts.append(
            _table(
                [
                    "scenario",
                    "events",
                    "batch",
                    "subs",
                    "ev/s",
                    "fn-only ev/s",
                    "tx/batch",
                    "bound",
                    "aggr/batch",
                    "max tx/slice",
                    "reads warm/steady",
                    "RSS start",
                    "RSS@50k",
                    "RSS end",
                    "peak RSS",
                    "ledger ok",
                ],
                [
                    [
                        name,
                        row["events"],
                        row["batch_size"],
                        row["subscriptions"],
                        row["events_per_s"],
                        row["function_events_per_s"],
                        row["transactions_per_batch"],
                        row.get("transaction_bound_per_batch"),
                        row.get("aggregates_per_batch"),
                        row["max_transactions_per_slice"],
                        f"{row['warmup_reads']}/{row['steady_reads']}",
                        row["rss_mib_start"],
                        row["rss_mib_at_50k"],
                        row["rss_mib_end"],
                        row["peak_rss_mib"],
                        row.get("ledger_matches"),
                    ]
                    for name, row in runs
                ],
            )
        )
        parts.append("\nWhere the time goes (seconds of wall time; CPU seconds for Python and Azurite)")
        parts.append(
            _table(
                [
                    "scenario",
                    "events",
                    "batch",
                    "converter",
                    "function",
                    "commit",
                    "body",
                    "answer",
                    "http",
                    "py CPU",
                    "Azurite CPU",
                    "wall",
                ],
                [
                    [
                        name,
                        row["events"],
                        row["batch_size"],
                        row["seconds_converter"],
                        row["seconds_function"],
                        row["seconds_commit"],
                        row.get("seconds_batch_body"),
                        row.get("seconds_batch_answer"),
                        row["seconds_http"],
                        row["python_cpu_seconds"],
                        row["azurite_cpu_seconds"],
                        row["seconds_wall"],
                    ]
                    for name, row in runs
                ],
            )
        )
    if "naive" in results:
        naive = results["naive"]
        parts.append("\n3. Naive baseline: get_entity + add + upsert_entity per event, same events, same Azurite")
        parts.append(
            _table(
                ["events", "ev/s", "http share", "end-to-end ev/s", "ratio", "fn-only ratio", "in table"],
                [
                    [
                        naive["events"],
                        naive["events_per_s"],
                        naive["http_share"],
                        naive.get("end_to_end_events_per_s"),
                        naive.get("ratio"),
                        naive.get("function_only_ratio"),
                        naive["requests_in_table"],
                    ]
                ],
            )
        )
    report = results.get("report")
    if report:
        parts.append(
            f"\n5. A month's report: {report['subscriptions']:,} subscriptions × {report['models']} models × "
            f"{report['days']} days = {report['ledger_rows']:,} ledger rows, {report['report_lines']:,} lines"
        )
        steps = list(report["seconds"])
        parts.append(
            _table(
                ["step", *steps, "total", "peak RSS MiB"],
                [
                    ["seconds", *(report["seconds"][step] for step in steps), report["seconds_total"], ""],
                    [
                        "MB",
                        "",
                        *(round(report["bytes"][step] / 1e6, 1) for step in steps[1:]),
                        "",
                        report["peak_rss_mib"],
                    ],
                ],
            )
        )
    comparison = results.get("comparison", [])
    if comparison:
        parts.append("\n6. Back to back: the baseline code, then this code, same spec, fresh Azurite each")
        parts.append(
            _table(
                [
                    "subs",
                    "events",
                    "old ev/s",
                    "new ev/s",
                    "ratio",
                    "old fn ev/s",
                    "new fn ev/s",
                    "old py CPU",
                    "new py CPU",
                    "old Azurite CPU",
                    "new Azurite CPU",
                    "old tx/batch",
                    "new tx/batch",
                ],
                [
                    [
                        row["subscriptions"],
                        row["events"],
                        row["old"]["events_per_s"],
                        row["new"]["events_per_s"],
                        row.get("events_per_s_ratio"),
                        row["old"]["function_events_per_s"],
                        row["new"]["function_events_per_s"],
                        row["old"]["python_cpu_seconds"],
                        row["new"]["python_cpu_seconds"],
                        row["old"]["azurite_cpu_seconds"],
                        row["new"]["azurite_cpu_seconds"],
                        row["old"]["transactions_per_batch"],
                        row["new"]["transactions_per_batch"],
                    ]
                    for row in comparison
                ],
            )
        )
    checks = results.get("targets", [])
    if checks:
        parts.append("\nTargets")
        parts.append(
            _table(
                ["target", "measured", "wanted", "met"],
                [[check["target"], check["measured"], check["wanted"], check["met"]] for check in checks],
            )
        )
    return "\n".join(parts)


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m benchmarks", description=__doc__)
    parser.add_argument("--quick", action="store_true", help="small inputs: a smoke run of every scenario")
    parser.add_argument("--only", choices=SCENARIOS, action="append", help="run only this scenario (repeatable)")
    parser.add_argument("--events", type=int, help="events for the end-to-end scenario (default 200,000)")
    parser.add_argument("--output", type=Path, default=RESULTS, help="where to write the results (JSON)")
    parser.add_argument(
        "--baseline",
        type=Path,
        help="a checkout of other code (e.g. `git archive` of an older commit): scenario `compare` runs "
        "each subscription count with it and with this code, back to back",
    )
    parser.add_argument("--child", help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args.child:
        _run_child(args.child, args.output)
        return 0
    plan = Plan.quick(args.events) if args.quick else Plan.full(args.events)
    scenarios = tuple(args.only or SCENARIOS)
    started = time.perf_counter()
    if "compare" in scenarios and args.only and args.baseline is None:
        parser.error("--only compare needs --baseline")
    results = run(scenarios, plan, args.baseline.resolve() if args.baseline else None)
    results["targets"] = targets(results)
    document = {
        "command": " ".join(["python -m benchmarks", *(argv if argv is not None else sys.argv[1:])]).strip(),
        "date": dt.datetime.now(dt.UTC).isoformat(timespec="seconds"),
        "machine": machine(),
        "quick": args.quick,
        "plan": plan.__dict__,
        "seconds": round(time.perf_counter() - started, 1),
        **results,
    }
    args.output.write_text(json.dumps(document, indent=2) + "\n")
    print(render(results))
    print(f"\n{document['seconds']} s; results written to {args.output}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
