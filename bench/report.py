#!/usr/bin/env python3
"""Collects benchmark runs into a JSON result file and prints the summary table.

Subcommands (called by the bench scripts):

  wrk-line FILE SERVER SCENARIO ROUND
      Reads the BENCH_RESULT line that bench/lua/report.lua printed into wrk's output FILE
      and prints it as one JSON object tagged with the server, scenario and round.
  load RUNS OUT [--set=KEY=VALUE ...]
      Summarises wrk runs (JSON lines in RUNS): medians per scenario and server, the
      Keyward/OpenBao ratios and Keyward's share of the ceiling; writes OUT and prints a table.
  startup RUNS OUT [--set=KEY=VALUE ...]
      Summarises start-up runs: median time to the first TLS response and to the first
      successful read, and median idle RSS; writes OUT and prints a table.

`--set=a.b=VALUE` stores VALUE (parsed as JSON when it parses, else as a string) at key b of
object a in the result's "meta" object. The summary compares medians and prints whether each
target holds; it never fails on a timing.
"""

import json
import statistics
import sys
import time

# The targets: reads at least 5x OpenBao's req/s and 60% of the ceiling's, read p99 at most
# 5 ms, writes at least 2x OpenBao's, RSS under load at most 25% of OpenBao's, start-up to the
# first TLS response at most 100 ms, idle RSS at most 20 MiB.
READ_RATIO_TARGET = 5.0
CEILING_SHARE_TARGET = 0.60
READ_P99_TARGET_MS = 5.0
WRITE_RATIO_TARGET = 2.0
RSS_SHARE_TARGET = 0.25
STARTUP_TARGET_MS = 100.0
IDLE_RSS_TARGET_MIB = 20.0


def wrk_line(path, server, scenario, round_number):
    with open(path) as output:
        for line in output:
            if line.startswith("BENCH_RESULT "):
                run = json.loads(line[len("BENCH_RESULT "):])
                break
        else:
            sys.exit(f"no BENCH_RESULT line in {path}: did wrk fail?")

    seconds = run["duration_us"] / 1e6
    run.update(
        server=server,
        scenario=scenario,
        round=int(round_number),
        requests_per_second=run["requests"] / seconds if seconds else 0.0,
    )
    print(json.dumps(run))


def parse_sets(arguments):
    meta = {}
    for argument in arguments:
        if not argument.startswith("--set="):
            sys.exit(f"unexpected argument {argument!r}: use --set=KEY=VALUE")
        key, _, raw = argument[len("--set="):].partition("=")
        try:
            value = json.loads(raw)
        except json.JSONDecodeError:
            value = raw
        node = meta
        *parents, leaf = key.split(".")
        for parent in parents:
            node = node.setdefault(parent, {})
        node[leaf] = value
    return meta


def read_runs(path):
    with open(path) as lines:
        return [json.loads(line) for line in lines if line.strip()]


def verdict(holds):
    return "holds" if holds else "misses"


def summarise_load(runs, meta):
    summary = {}
    for run in runs:
        per_server = summary.setdefault(run["scenario"], {}).setdefault(run["server"], [])
        per_server.append(run)

    result = {}
    for scenario, servers in summary.items():
        medians = {}
        for server, server_runs in servers.items():
            medians[server] = {
                "runs": len(server_runs),
                "requests_per_second": statistics.median(r["requests_per_second"] for r in server_runs),
                "p50_ms": statistics.median(r["p50_us"] for r in server_runs) / 1000,
                "p99_ms": statistics.median(r["p99_us"] for r in server_runs) / 1000,
                "error_status": sum(r["error_status"] for r in server_runs),
                "socket_errors": sum(r["socket_errors"] for r in server_runs),
            }
        entry = {"medians": medians}
        keyward = medians.get("keyward")
        openbao = medians.get("openbao")
        ceiling = medians.get("ceiling")
        if keyward and openbao:
            entry["keyward_over_openbao"] = {
                "requests_per_second": keyward["requests_per_second"] / openbao["requests_per_second"],
                "p50": keyward["p50_ms"] / openbao["p50_ms"],
                "p99": keyward["p99_ms"] / openbao["p99_ms"],
            }
        if keyward and ceiling:
            entry["keyward_share_of_ceiling"] = keyward["requests_per_second"] / ceiling["requests_per_second"]
        result[scenario] = entry
    return result


def print_load(summary, meta):
    rss = meta.get("peak_rss_kib", {})
    print()
    print(f"{'scenario':<10} {'server':<9} {'req/s':>10} {'p50 ms':>8} {'p99 ms':>8} {'errors':>7} {'peak RSS':>10}")
    for scenario, entry in summary.items():
        for server, median in entry["medians"].items():
            errors = median["error_status"] + median["socket_errors"]
            peak = f"{rss[server] / 1024:.1f} MiB" if server in rss else ""
            print(
                f"{scenario:<10} {server:<9} {median['requests_per_second']:>10.0f} "
                f"{median['p50_ms']:>8.2f} {median['p99_ms']:>8.2f} {errors:>7} {peak:>10}"
            )
    print()
    for scenario, entry in summary.items():
        ratio = entry.get("keyward_over_openbao")
        if ratio:
            print(
                f"{scenario}: Keyward/OpenBao req/s {ratio['requests_per_second']:.2f}x, "
                f"p50 {ratio['p50']:.2f}x, p99 {ratio['p99']:.2f}x (medians)"
            )
        share = entry.get("keyward_share_of_ceiling")
        if share is not None:
            print(f"{scenario}: Keyward reaches {share:.0%} of the ceiling's req/s")
    if "keyward" in rss and "openbao" in rss:
        print(f"peak RSS: Keyward is {rss['keyward'] / rss['openbao']:.0%} of OpenBao's")

    print()
    print("targets (medians of this run):")
    read = summary.get("read")
    if read and "keyward_over_openbao" in read:
        ratio = read["keyward_over_openbao"]["requests_per_second"]
        print(f"  reads >= {READ_RATIO_TARGET:.0f}x OpenBao's req/s: {verdict(ratio >= READ_RATIO_TARGET)} ({ratio:.2f}x)")
        p99 = read["medians"]["keyward"]["p99_ms"]
        print(f"  read p99 <= {READ_P99_TARGET_MS:.0f} ms: {verdict(p99 <= READ_P99_TARGET_MS)} ({p99:.2f} ms)")
    if read and "keyward_share_of_ceiling" in read:
        share = read["keyward_share_of_ceiling"]
        print(f"  reads >= {CEILING_SHARE_TARGET:.0%} of the ceiling: {verdict(share >= CEILING_SHARE_TARGET)} ({share:.0%})")
    for scenario in ("update", "create"):
        entry = summary.get(scenario)
        if entry and "keyward_over_openbao" in entry:
            ratio = entry["keyward_over_openbao"]["requests_per_second"]
            print(f"  {scenario} writes >= {WRITE_RATIO_TARGET:.0f}x OpenBao's: {verdict(ratio >= WRITE_RATIO_TARGET)} ({ratio:.2f}x)")
    if "keyward" in rss and "openbao" in rss:
        share = rss["keyward"] / rss["openbao"]
        print(f"  peak RSS <= {RSS_SHARE_TARGET:.0%} of OpenBao's: {verdict(share <= RSS_SHARE_TARGET)} ({share:.0%})")


def summarise_startup(runs):
    result = {}
    for server in sorted({run["server"] for run in runs}):
        server_runs = [run for run in runs if run["server"] == server]
        result[server] = {
            "runs": len(server_runs),
            "first_tls_response_ms": statistics.median(r["first_tls_response_ms"] for r in server_runs),
            "ready_ms": statistics.median(r["ready_ms"] for r in server_runs),
            "idle_rss_kib": statistics.median(r["idle_rss_kib"] for r in server_runs),
        }
    return result


def print_startup(summary):
    print()
    print(f"{'server':<9} {'first TLS response':>19} {'first read':>11} {'idle RSS':>10}")
    for server, median in summary.items():
        print(
            f"{server:<9} {median['first_tls_response_ms']:>16.1f} ms {median['ready_ms']:>8.1f} ms "
            f"{median['idle_rss_kib'] / 1024:>6.1f} MiB"
        )
    keyward = summary.get("keyward")
    if keyward:
        print()
        print("targets (medians of this run):")
        first = keyward["first_tls_response_ms"]
        rss = keyward["idle_rss_kib"] / 1024
        print(f"  start-up to first TLS response <= {STARTUP_TARGET_MS:.0f} ms: {verdict(first <= STARTUP_TARGET_MS)} ({first:.1f} ms)")
        print(f"  idle RSS <= {IDLE_RSS_TARGET_MIB:.0f} MiB: {verdict(rss <= IDLE_RSS_TARGET_MIB)} ({rss:.1f} MiB)")


def write_result(out, kind, runs, summary, meta):
    meta["loadavg_end"] = [float(x) for x in open("/proc/loadavg").read().split()[:3]]
    meta["finished_at"] = time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime())
    with open(out, "w") as file:
        json.dump({"benchmark": kind, "meta": meta, "summary": summary, "runs": runs}, file, indent=2)
        file.write("\n")
    print()
    print(f"results written to {out}")


def main(argv):
    if len(argv) < 2:
        sys.exit(__doc__)
    command = argv[1]
    if command == "wrk-line" and len(argv) == 6:
        wrk_line(*argv[2:])
    elif command == "load" and len(argv) >= 4:
        meta = parse_sets(argv[4:])
        runs = read_runs(argv[2])
        summary = summarise_load(runs, meta)
        print_load(summary, meta)
        write_result(argv[3], meta.get("name", "load"), runs, summary, meta)
        failed = [r for r in runs if r["error_status"] or r["socket_errors"]]
        if failed:
            for run in failed:
                print(
                    f"error: {run['server']} {run['scenario']} round {run['round']}: "
                    f"{run['error_status']} HTTP errors, {run['socket_errors']} socket errors",
                    file=sys.stderr,
                )
            sys.exit("some requests failed, so these figures do not measure successful requests")
    elif command == "startup" and len(argv) >= 4:
        meta = parse_sets(argv[4:])
        runs = read_runs(argv[2])
        summary = summarise_startup(runs)
        print_startup(summary)
        write_result(argv[3], "startup", runs, summary, meta)
    else:
        sys.exit(__doc__)


if __name__ == "__main__":
    main(sys.argv)
