#!/usr/bin/env python3
"""Lookups of two builds over the same data, alternating, for a before/after comparison that
machine drift does not decide: on a shared virtual machine the speed of one core moves by 30%
within minutes, more than a change to the lookup path does.

    python3 bench/ab_lookups.py BEFORE_BINARY AFTER_BINARY [--servers 10] [--rounds 6]
    python3 bench/ab_lookups.py BINARY BINARY --before-servers 1 --after-servers 10

Starts each build on its own SQLite database, pushes `servers` x 1M hashes into each (or a
different count per side: the same build at two sizes), stops one while the other is measured,
and runs `oha` (64 connections, 5 s after 2 s of warm-up) against each in turn, `rounds` times.
The body holds 50 distinct pushed hashes, spread over the servers, and 50 unknown ones. Prints
and saves (bench/results/) the requests per second of every run and the ratio of the medians.
"""

import argparse
import json
import os
import statistics
import sys
import tempfile

import run


def loaded(binary, work, servers):
    """A stopped server of `binary` whose database holds `servers` x 1M pushed hashes."""
    run.BINARY = binary
    server = run.Server("sqlite", work)
    server.start()
    pepper = server.pepper()
    samples = []
    each = -(-50 // servers)
    for s in range(servers):
        hashes = run.org_hashes(s, pepper)
        samples.extend(hashes[:: len(hashes) // each][:each])
        server.push(f"org{s}.example:443", pepper, hashes)
    server.stop()
    unknown = [run.lookup_hash(f"nobody{n}@nowhere.example", "email", pepper) for n in range(50)]
    return server, {"algorithm": "sha256", "pepper": pepper, "addresses": samples[:50] + unknown}


def main():
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("before")
    parser.add_argument("after")
    parser.add_argument("--servers", type=int, default=10, help="servers x 1M pushed hashes on each side")
    parser.add_argument("--before-servers", type=int, help="servers on the before side (default: --servers)")
    parser.add_argument("--after-servers", type=int, help="servers on the after side (default: --servers)")
    parser.add_argument("--rounds", type=int, default=6)
    parser.add_argument("--seconds", type=int, default=5)
    args = parser.parse_args()
    sizes = {"before": args.before_servers or args.servers, "after": args.after_servers or args.servers}
    results = {"machine": run.machine(), "binaries": {"before": args.before, "after": args.after},
               "servers": sizes, "runs": {"before": [], "after": []}}
    with tempfile.TemporaryDirectory() as before_work, tempfile.TemporaryDirectory() as after_work:
        builds = {
            "before": (args.before, *loaded(args.before, before_work, sizes["before"])),
            "after": (args.after, *loaded(args.after, after_work, sizes["after"])),
        }
        for _ in range(args.rounds):
            for name, (binary, server, body) in builds.items():
                run.BINARY = binary
                server.start()
                run.oha(server, body, 2, connections=64)  # warm the caches
                measured = run.oha(server, body, args.seconds, connections=64)
                server.stop()
                results["runs"][name].append(measured["requests_per_second"])
                print(name, measured["requests_per_second"], measured["p99_ms"], file=sys.stderr, flush=True)
    medians = {name: statistics.median(runs) for name, runs in results["runs"].items()}
    results["medians"] = medians
    results["after_vs_before"] = round(medians["after"] / medians["before"], 3)
    name = f"{results['machine']['date'][:19].replace(':', '')}-ab-lookups.json"
    with open(os.path.join(run.ROOT, "bench", "results", name), "w") as file:
        json.dump(results, file, indent=2)
    print(json.dumps(results, indent=2))


if __name__ == "__main__":
    main()
