#!/usr/bin/env python3
"""Benchmarks of federated-identity-service: lookup (as a trusted server and as a user), push,
rotation, startup/idle, directory sync, scale (ten million pushed hashes) and instances (three
instances on one PostgreSQL database with ten million pushed hashes); the last two are not in
the default list: `--scenarios scale,instances`.

Starts the release binary on loopback with SQLite and/or PostgreSQL, loads the data, drives it
with `oha` (the load generator runs on the same machine), and prints the figures as JSON; the
same figures go to bench/results/. Run it through scripts/bench.sh, which builds the binary, installs
the tools and starts PostgreSQL and slapd. Standard library only.
"""

import argparse
import base64
import concurrent.futures
import datetime
import hashlib
import http.client
import json
import os
import platform
import random
import sqlite3
import subprocess
import sys
import tempfile
import time
import urllib.parse

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
# FIS_BENCH_BINARY runs another build (e.g. the previous commit's) for a before/after comparison.
BINARY = os.environ.get("FIS_BENCH_BINARY", os.path.join(ROOT, "target", "release", "federated-identity-service"))
OHA = os.environ.get("OHA", os.path.join(ROOT, "target", "bench-tools", "bin", "oha"))
CLK_TCK = os.sysconf("SC_CLK_TCK")


def lookup_hash(address, medium, pepper):
    digest = hashlib.sha256(f"{address} {medium} {pepper}".encode()).digest()
    return base64.urlsafe_b64encode(digest).rstrip(b"=").decode()


def org_hashes(org, pepper, count=1_000_000):
    """The hashes a server `org<org>.example` pushes in the benchmarks: `count` e-mail addresses."""
    return [lookup_hash(f"u{n}@org{org}.example", "email", pepper) for n in range(count)]


def free_port():
    import socket

    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def postgres_database():
    """A fresh database on the PostgreSQL that scripts/services.sh started."""
    admin = os.environ["FIS_TEST_POSTGRES_URL"]
    name = f"fis_bench_{random.getrandbits(48):012x}"
    parsed = urllib.parse.urlparse(admin)
    subprocess.run(
        ["psql", admin, "-q", "-c", f"CREATE DATABASE {name}"], check=True, stdout=subprocess.DEVNULL
    )
    return parsed._replace(path=f"/{name}").geturl()


class Server:
    """One service process with its own data."""

    def __init__(self, engine, work, **config):
        self.work = work
        self.port = free_port()
        self.config = {
            "listen_port": self.port,
            "data_dir": os.path.join(work, "data"),
            "server_name": "bench.example",
            "base_url": f"http://127.0.0.1:{self.port}",
            "trusted_servers_addresses": ["127.0.0.1"],
            "cron_service": False,
            "rate_limiting_nb_requests": 1_000_000_000,
            "hashes_rate_limit": 1000,
            "lookups_body_limit": 128 * 1024 * 1024,
            "request_timeout": 600,
            "logging": {"log_level": "warn"},
        }
        if engine == "postgres":
            # A fresh database, unless the caller names one (instances sharing it).
            self.config.update({"database_engine": "pg", "database_host": config.get("database_host") or postgres_database()})
        self.config.update(config)
        self.config_path = os.path.join(work, "config.json")
        with open(self.config_path, "w") as file:
            json.dump(self.config, file)
        self.process = None

    def cli(self, *args):
        started = time.perf_counter()
        output = subprocess.run([BINARY, "--config", self.config_path, *args], check=True, capture_output=True, text=True)
        return time.perf_counter() - started, output.stdout

    def start(self):
        """Starts the process; returns the seconds until it answered its first request."""
        log = open(os.path.join(self.work, "server.log"), "w")
        started = time.perf_counter()
        self.process = subprocess.Popen([BINARY, "--config", self.config_path], stderr=log, stdout=log)
        while True:
            try:
                connection = http.client.HTTPConnection("127.0.0.1", self.port, timeout=1)
                connection.request("GET", "/_matrix/identity/versions")
                if connection.getresponse().status == 200:
                    return time.perf_counter() - started
            except OSError:
                pass
            if self.process.poll() is not None:
                raise RuntimeError(open(os.path.join(self.work, "server.log")).read())
            if time.perf_counter() - started > 120:
                raise RuntimeError("the service did not start")
            time.sleep(0.0005)

    def stop(self):
        if self.process:
            self.process.terminate()
            self.process.wait(timeout=60)
            self.process = None

    def status(self, field):
        with open(f"/proc/{self.process.pid}/status") as file:
            for line in file:
                if line.startswith(field + ":"):
                    return int(line.split()[1]) / 1024  # MiB
        return None

    def cpu_seconds(self):
        with open(f"/proc/{self.process.pid}/stat") as file:
            fields = file.read().rsplit(")", 1)[1].split()
        return (int(fields[11]) + int(fields[12])) / CLK_TCK

    def call(self, method, path, body=None):
        connection = http.client.HTTPConnection("127.0.0.1", self.port, timeout=600)
        payload = json.dumps(body).encode() if body is not None else None
        connection.request(method, path, body=payload, headers={"content-type": "application/json"})
        response = connection.getresponse()
        data = response.read()
        return response.status, (json.loads(data) if data else None)

    def pepper(self):
        return self.call("GET", "/_matrix/identity/v2/hash_details")[1]["lookup_pepper"]

    def push(self, server, pepper, hashes):
        """One MSC4004 push; returns the seconds from sending the (already encoded) body to
        the answer, and the answer."""
        payload = json.dumps({"algorithm": "sha256", "pepper": pepper, "mappings": {server: hashes}}).encode()
        connection = http.client.HTTPConnection("127.0.0.1", self.port, timeout=600)
        started = time.perf_counter()
        connection.request("POST", "/_matrix/identity/v2/lookups", body=payload, headers={"content-type": "application/json"})
        response = connection.getresponse()
        data = response.read()
        seconds = time.perf_counter() - started
        if response.status != 201:
            raise RuntimeError(f"push answered {response.status}: {data[:200]}")
        return seconds, json.loads(data)


def oha(server, body, seconds, connections, rate=None, token=None):
    """Drives POST /lookup with `body` (with `Authorization: Bearer <token>` when given); returns
    oha's JSON summary."""
    body_path = os.path.join(server.work, "lookup.json")
    with open(body_path, "w") as file:
        json.dump(body, file)
    command = [
        OHA, "--no-tui", "--output-format", "json", "-z", f"{seconds}s", "-c", str(connections),
        "-m", "POST", "-T", "application/json", "-D", body_path,
        f"http://127.0.0.1:{server.port}/_matrix/identity/v2/lookup",
    ]
    if rate:
        command[1:1] = ["-q", str(rate)]
    if token:
        command[1:1] = ["-H", f"Authorization: Bearer {token}"]
    cpu_before, started = server.cpu_seconds(), time.perf_counter()
    output = subprocess.run(command, check=True, capture_output=True, text=True)
    cpu = (server.cpu_seconds() - cpu_before) / (time.perf_counter() - started)
    result = json.loads(output.stdout)
    statuses = result.get("statusCodeDistribution", {})
    summary = result["summary"]
    latency = result["latencyPercentiles"]
    return {
        "requests_per_second": round(summary["requestsPerSec"], 1),
        "hashes_per_second": round(summary["requestsPerSec"] * len(body["addresses"])),
        "p50_ms": round(latency["p50"] * 1000, 2),
        "p99_ms": round(latency["p99"] * 1000, 2),
        "max_ms": round(summary["slowest"] * 1000, 2),
        "non_200": sum(count for code, count in statuses.items() if code != "200"),
        # Requests still in flight when the run ends are counted by oha as "aborted due to
        # deadline"; they are not errors of the service.
        "errors": sum(n for kind, n in result.get("errorDistribution", {}).items() if "deadline" not in kind),
        "server_cpu_cores": round(cpu, 2),
        "server_rss_mib": round(server.status("VmRSS"), 1),
        "server_peak_rss_mib": round(server.status("VmHWM"), 1),
    }


def sql_directory(path, users, prefix="user"):
    """A SQLite users table with `users` users, one e-mail each."""
    if os.path.exists(path):
        os.remove(path)
    db = sqlite3.connect(path)
    db.execute("CREATE TABLE users (uid TEXT, mail TEXT, mobile TEXT)")
    db.executemany("INSERT INTO users VALUES (?, ?, NULL)", ((f"{prefix}{n}", f"{prefix}{n}@bench.example") for n in range(users)))
    db.commit()
    db.close()


def scenario_startup(engine, work):
    server = Server(engine, work)
    first = server.start()
    time.sleep(2)
    idle = server.status("VmRSS")
    server.stop()
    again = server.start()  # a start on an existing database
    server.stop()
    return {"first_start_s": round(first, 3), "restart_s": round(again, 3), "idle_rss_mib": round(idle, 1)}


def in_byte_order(hashes):
    """Lookup hashes (unpadded base64url) sorted by the bytes they write."""
    return sorted(hashes, key=lambda text: base64.urlsafe_b64decode(text + "="))


def scenario_push(engine, work):
    server = Server(engine, work)
    server.start()
    pepper = server.pepper()
    hashes = [lookup_hash(f"user{n}@org.example", "email", pepper) for n in range(1_000_000)]
    first, _ = server.push("org.example:443", pepper, hashes)
    identical, _ = server.push("org.example:443", pepper, hashes)
    changed = hashes[10_000:] + [lookup_hash(f"new{n}@org.example", "email", pepper) for n in range(10_000)]
    one_percent, answer = server.push("org.example:443", pepper, changed)
    peak = server.status("VmHWM")
    # The same two pushes from another server, with the hashes in the order of their bytes: what
    # this service's own pusher sends (the receiver's sort then finds them in order).
    first_sorted, _ = server.push("sorted.example:443", pepper, in_byte_order(hashes))
    one_percent_sorted, _ = server.push("sorted.example:443", pepper, in_byte_order(changed))
    server.stop()
    return {
        # Milliseconds matter: an identical re-push takes a few hundredths of a second.
        "first_push_s": round(first, 3), "identical_repush_s": round(identical, 3),
        "one_percent_changed_s": round(one_percent, 3),
        "in_byte_order": {"first_push_s": round(first_sorted, 3), "one_percent_changed_s": round(one_percent_sorted, 3)},
        "changed_answer": answer, "peak_rss_mib": round(peak, 1),
    }



def scenario_push_latency(engine, work):
    """Lookup latency at 500 requests/s, idle and while a first push of 1M lands on an instance
    holding 1M pushed hashes (no own 3PIDs: the short form of `scale`'s latency figures, quick
    enough to alternate two builds), with the push's time and the series per half second."""
    server = Server(engine, work)
    server.start()
    pepper = server.pepper()
    stored = org_hashes(0, pepper)
    server.push("org0.example:443", pepper, stored)
    unknown = [lookup_hash(f"nobody{n}@nowhere.example", "email", pepper) for n in range(50)]
    body = {"algorithm": "sha256", "pepper": pepper, "addresses": stored[:50] + unknown}
    idle = BackgroundLoad(server, body, 8, 500, work, "idle").finish()
    during, push_s = latency_through_push(server, body, 10, work, "org1.example:443", pepper, org_hashes(1, pepper))
    server.stop()
    return {"idle": idle, "during_1m_push": during, "push_s": round(push_s, 2),
            "p99_during_vs_idle": round(during["p99_ms"] / idle["p99_ms"], 2)}


def latency_through_push(server, body, seconds, work, pusher, pepper, hashes):
    """Lookups of `body` at 500/s for `seconds`, with a push of `hashes` by `pusher` starting
    after one second; the latencies (with their series per half second and the push's interval
    on it) and the push's seconds."""
    load = BackgroundLoad(server, body, seconds, 500, work, "during", series=True)
    time.sleep(1)
    push_started = load.since_start()
    push_s, _ = server.push(pusher, pepper, hashes)
    push_ended = load.since_start()
    during = load.finish()
    during["push_interval_s"] = [push_started, push_ended]
    return during, push_s

def lookup_data(server, pepper, own):
    """100 servers x 10,000 pushed hashes; returns a body of 100 addresses, half known."""
    pushed = []
    for s in range(100):
        hashes = org_hashes(s, pepper, 10_000)
        server.push(f"org{s}.example:443", pepper, hashes)
        pushed.append(hashes[0])
    local = [lookup_hash(f"user{n}@bench.example", "email", pepper) for n in range(0, own, own // 25)][:25]
    unknown = [lookup_hash(f"nobody{n}@nowhere.example", "email", pepper) for n in range(50)]
    return {"algorithm": "sha256", "pepper": pepper, "addresses": local + pushed[:25] + unknown}


def server_with_own_3pids(engine, work, users):
    """A started server whose SQL user directory of `users` users has been synced; returns it,
    the seconds the sync took, and the current pepper."""
    directory = os.path.join(work, "users.db")
    sql_directory(directory, users)
    server = Server(engine, work, userdb_engine="sqlite", userdb_host=directory, directory_publish_all=True)
    # Only `serve` creates the database: a first start, then the sync, then the measured start.
    server.start()
    server.stop()
    sync_seconds, _ = server.cli("sync-directory")
    server.start()
    return server, sync_seconds, server.pepper()


def scenario_lookup(engine, work, seconds):
    server, sync_seconds, pepper = server_with_own_3pids(engine, work, 100_000)
    body = lookup_data(server, pepper, 100_000)
    status, answer = server.call("POST", "/_matrix/identity/v2/lookup", body)
    known = found_count(answer)
    full = oha(server, body, seconds, connections=64)
    half = oha(server, body, seconds, connections=64, rate=int(full["requests_per_second"] / 2))
    server.stop()
    return {"known_addresses_per_request": known, "own_3pids": 100_000, "pushed_hashes": 1_000_000,
            "full_load": full, "half_load": half, "loading_100k_own_3pids_s": round(sync_seconds, 2)}


POLICIES = {"privacy_policy": {"version": "1.0", "en": {"name": "Privacy", "url": "https://bench.example/privacy"}}}


def insert_access_token(server, engine, user_id):
    """Stores an access token for `user_id` as a registration would (its SHA-256 digest), for a
    benchmark that has no homeserver to register through; returns the token."""
    token = base64.urlsafe_b64encode(os.urandom(32)).rstrip(b"=").decode()
    digest = base64.urlsafe_b64encode(hashlib.sha256(token.encode()).digest()).rstrip(b"=").decode()
    now = int(time.time() * 1000)
    row = (digest, user_id, now, now + 86_400_000)
    if engine == "postgres":
        values = ", ".join(f"'{value}'" if isinstance(value, str) else str(value) for value in row)
        sql = f"INSERT INTO access_tokens (token_hash, user_id, created_at, expires_at) VALUES ({values})"
        subprocess.run(["psql", server.config["database_host"], "-q", "-c", sql], check=True, stdout=subprocess.DEVNULL)
    else:
        db = sqlite3.connect(os.path.join(server.config["data_dir"], "federated-identity-service.db"))
        db.execute("INSERT INTO access_tokens (token_hash, user_id, created_at, expires_at) VALUES (?, ?, ?, ?)", row)
        db.commit()
        db.close()
    return token


def scenario_lookup_user(engine, work, seconds):
    """The lookup scenario's data and body, as a trusted server and then as a user with a token
    who accepted the terms (what Element and Twake Chat send), at full load, in one run."""
    server, _, pepper = server_with_own_3pids(engine, work, 100_000)
    body = lookup_data(server, pepper, 100_000)
    trusted = oha(server, body, seconds, connections=64)
    server.stop()
    # The same data, served to users: nobody is trusted by address, the terms must be accepted.
    server.config.update({"trusted_servers_addresses": [], "policies": POLICIES})
    with open(server.config_path, "w") as file:
        json.dump(server.config, file)
    server.start()
    token = insert_access_token(server, engine, "@bench:bench.example")
    connection = http.client.HTTPConnection("127.0.0.1", server.port, timeout=60)
    accept = json.dumps({"user_accepts": [POLICIES["privacy_policy"]["en"]["url"]]}).encode()
    connection.request("POST", "/_matrix/identity/v2/terms", body=accept,
                       headers={"content-type": "application/json", "authorization": f"Bearer {token}"})
    if connection.getresponse().status != 200:
        raise RuntimeError("the terms were not accepted")
    user = oha(server, body, seconds, connections=64, token=token)
    server.stop()
    ratio = user["requests_per_second"] / trusted["requests_per_second"]
    return {"trusted_server": trusted, "user_with_token": user, "user_vs_trusted": round(ratio, 3)}


def scenario_rotation(engine, work, seconds):
    """1M own 3PIDs; `rotate-pepper` (the operator command, in another process) under a steady
    500 lookups/s: the rotation's time, the seconds until this instance answers with the new
    pepper, and lookup latency idle and from the rotation's start until the instance follows
    it (with the series per half second)."""
    server, sync_seconds, pepper = server_with_own_3pids(engine, work, 1_000_000)
    body = {"algorithm": "sha256", "pepper": pepper,
            "addresses": [lookup_hash(f"user{n}@bench.example", "email", pepper) for n in range(0, 1_000_000, 10_000)]}
    idle = BackgroundLoad(server, body, 8, 500, work, "idle").finish()
    rotation_s, during = latency_through_rotation(server, body, seconds, work)
    peak = server.status("VmHWM")
    server.stop()
    return {
        "local_3pids": 1_000_000, "loading_1m_own_3pids_s": round(sync_seconds, 2), "rotation_s": round(rotation_s, 2),
        "followed_after_s": round(during["followed_at_s"] - during["rotation_interval_s"][0], 2), "idle": idle,
        "during_rotation": during, "p99_during_vs_idle": round(during["p99_ms"] / idle["p99_ms"], 2),
        "peak_rss_mib": round(peak, 1),
    }


def latency_through_rotation(server, body, seconds, work):
    """Lookups of `body` at 500/s, with `rotate-pepper` (the operator command, in another
    process) starting after one second; the rotation's seconds and the latencies from its start
    until this instance answers with the new pepper (the whole load's rate and series, the
    rotation's interval and the moment the instance followed)."""
    pepper = server.pepper()
    load = BackgroundLoad(server, body, seconds + 40, 500, work, "rotation", series=True)
    time.sleep(1)
    started = load.since_start()
    rotation_s, _ = server.cli("rotate-pepper")
    deadline = time.perf_counter() + 120
    while server.pepper() == pepper:
        if time.perf_counter() > deadline:
            raise RuntimeError("the instance did not follow the rotation within 120 s")
        time.sleep(0.02)
    followed = load.since_start()
    during = load.finish()
    during.update(load.latency_between(started, followed))
    during["rotation_interval_s"] = [started, round(started + rotation_s, 2)]
    during["followed_at_s"] = followed
    return rotation_s, during


class BackgroundLoad:
    """A lookup load of `rate` requests per second for `seconds`, started in the background.
    With `series`, oha writes every request to a SQLite file and the result also gives the
    latencies per half second."""

    def __init__(self, server, body, seconds, rate, work, name, series=False):
        body_path = os.path.join(work, f"{name}.json")
        with open(body_path, "w") as file:
            json.dump(body, file)
        self.requests_db = os.path.join(work, f"{name}-requests.db") if series else None
        command = [OHA, "--no-tui", "--output-format", "json", "-z", f"{seconds}s", "-c", "16", "-q", str(rate),
                   "-m", "POST", "-T", "application/json", "-D", body_path,
                   f"http://127.0.0.1:{server.port}/_matrix/identity/v2/lookup"]
        if series:
            command[1:1] = ["--db-url", self.requests_db]
        # The origin of the series' times (oha's own clock starts a few milliseconds later).
        self.started = time.perf_counter()
        self.process = subprocess.Popen(command, stdout=subprocess.PIPE, text=True)

    def since_start(self):
        """Seconds since the load started, to place events on its series."""
        return round(time.perf_counter() - self.started, 2)

    def finish(self):
        """Waits for the load; its latencies (`series`: [seconds from the start, p50, p99, max
        (ms), requests] per half second)."""
        output, _ = self.process.communicate()
        result = json.loads(output[output.index("{"):])
        latency = result["latencyPercentiles"]
        statuses = result.get("statusCodeDistribution", {})
        summary = {"requests_per_second": round(result["summary"]["requestsPerSec"], 1),
                   "p50_ms": round(latency["p50"] * 1000, 2), "p99_ms": round(latency["p99"] * 1000, 2),
                   "max_ms": round(result["summary"]["slowest"] * 1000, 2),
                   "non_200": sum(c for code, c in statuses.items() if code != "200")}
        if self.requests_db:
            summary["series"] = latency_series(self.requests_db)
        return summary

    def latency_between(self, start, end):
        """Percentiles of the requests sent from `start` to `end` (seconds on the series),
        from the request log (`series` only); call after `finish`."""
        db = sqlite3.connect(self.requests_db)
        rows = db.execute("SELECT duration FROM oha WHERE start >= ? AND start < ?", (start, end)).fetchall()
        db.close()
        return percentiles(duration * 1000 for (duration,) in rows)


def latency_series(requests_db, window=0.5):
    """Per `window` seconds of oha's request log: [start, p50, p99, max (ms), requests]."""
    db = sqlite3.connect(requests_db)
    rows = db.execute("SELECT start, duration FROM oha ORDER BY start").fetchall()
    db.close()
    windows = {}
    for start, duration in rows:
        windows.setdefault(int(start / window), []).append(duration * 1000)
    series = []
    for index in sorted(windows):
        values = percentiles(windows[index])
        series.append([round(index * window, 2), values["p50_ms"], values["p99_ms"], values["max_ms"],
                       values["requests"]])
    return series


def percentiles(latencies_ms):
    """p50, p99 and max (ms) and the count of `latencies_ms`."""
    values = sorted(latencies_ms)
    pick = lambda q: values[min(len(values) - 1, int(q * len(values)))]  # noqa: E731
    return {"p50_ms": round(pick(0.5), 2), "p99_ms": round(pick(0.99), 2), "max_ms": round(values[-1], 2),
            "requests": len(values)}


def scenario_scale(engine, work, seconds, servers):
    """Ten million pushed hashes (`servers` x 1M) over 1M own 3PIDs: resident memory per hash
    and push time as the stored hashes grow, lookups at 1M and at the end, lookup latency
    while a 1M push runs, and the start with everything stored."""
    os.makedirs(os.path.join(work, "empty"))
    empty = Server(engine, os.path.join(work, "empty"))
    empty.start()
    # "Idle": no data, under the same light load the figures below are read under.
    empty_pepper = empty.pepper()
    probe = {"algorithm": "sha256", "pepper": empty_pepper,
             "addresses": [lookup_hash(f"nobody{n}@nowhere.example", "email", empty_pepper) for n in range(75)]}
    BackgroundLoad(empty, probe, 3, 500, os.path.join(work, "empty"), "settle").finish()
    idle_rss = empty.status("VmRSS")
    empty.stop()
    server, sync_seconds, pepper = server_with_own_3pids(engine, work, 1_000_000)
    own = 1_000_000
    local = [lookup_hash(f"user{n}@bench.example", "email", pepper) for n in range(0, own, own // 25)][:25]
    unknown = [lookup_hash(f"nobody{n}@nowhere.example", "email", pepper) for n in range(50)]
    first_of_each = []
    growth = []

    def settle_rss():
        """Resident memory under a light lookup load (500 requests/s for 3 s), as an instance in
        service has it: an allocator may keep freed pages until the next allocations."""
        probe = {"algorithm": "sha256", "pepper": pepper, "addresses": local + unknown}
        BackgroundLoad(server, probe, 3, 500, work, "settle").finish()
        return server.status("VmRSS")

    growth.append({"pushed_hashes": 0, "rss_mib": round(settle_rss(), 1), "push_s": None})
    lookups = {}
    for s in range(servers):
        hashes = org_hashes(s, pepper)
        first_of_each.append(hashes[0])
        seconds_taken, _ = server.push(f"org{s}.example:443", pepper, hashes)
        del hashes
        stored = (s + 1) * 1_000_000
        rss = settle_rss()
        growth.append({"pushed_hashes": stored, "rss_mib": round(rss, 1), "push_s": round(seconds_taken, 2),
                       "bytes_per_hash": round((rss - idle_rss) * 1024 * 1024 / (stored + own), 1)})
        print(json.dumps(growth[-1]), file=sys.stderr, flush=True)
        if s == 0 or s == servers - 1:
            pushed = (first_of_each * 25)[:25]
            body = {"algorithm": "sha256", "pepper": pepper, "addresses": local + pushed + unknown}
            lookups[f"{stored // 1_000_000}M"] = oha(server, body, seconds, connections=64)
    # Lookup latency at a steady rate, idle and while another 1M push runs.
    body = {"algorithm": "sha256", "pepper": pepper, "addresses": local + first_of_each[:25] + unknown}
    idle = BackgroundLoad(server, body, seconds, 500, work, "idle").finish()
    extra = [lookup_hash(f"u{n}@extra.example", "email", pepper) for n in range(1_000_000)]
    during, push_during = latency_through_push(server, body, seconds, work, "extra.example:443", pepper, extra)
    after = BackgroundLoad(server, body, 5, 500, work, "after").finish()
    stored = servers * 1_000_000 + 1_000_000
    rss = settle_rss()
    server.stop()
    restart_s = server.start()
    restarted_rss = settle_rss()
    status, answer = server.call("POST", "/_matrix/identity/v2/lookup", body)
    found = found_count(answer)
    # A rotation under the same steady load (the operator command, in another process: this
    # instance follows it), the lookups still under the pepper that becomes the previous one.
    _, rotation = latency_through_rotation(server, body, seconds, work)
    server.stop()
    return {
        "own_3pids": own, "servers": servers, "idle_rss_mib": round(idle_rss, 1),
        "loading_1m_own_3pids_s": round(sync_seconds, 2), "growth": growth, "lookups": lookups,
        "latency_at_500_rps": {"idle": idle, "during_1m_push": during, "after_1m_push": after,
                               "push_s": round(push_during, 2)},
        "pushed_hashes": stored, "rss_mib": round(rss, 1),
        "bytes_per_hash": round((rss - idle_rss) * 1024 * 1024 / (stored + own), 1),
        "start_with_everything_s": round(restart_s, 2), "restarted_rss_mib": round(restarted_rss, 1),
        "restarted_bytes_per_hash": round((restarted_rss - idle_rss) * 1024 * 1024 / (stored + own), 1),
        "known_addresses_after_restart": found, "during_rotation": rotation,
    }


def found_count(answer):
    """Addresses a lookup answer maps, local and pushed."""
    if "mappings" not in answer:
        raise RuntimeError(f"a lookup failed: {answer}")
    return len(answer["mappings"]) + sum(len(hashes) for hashes in answer["third_party_mappings"].values())


def seconds_until_found(instances, body):
    """Polls every instance with `body` at once until its answer maps something; the seconds
    each took."""
    started = time.time()
    with concurrent.futures.ThreadPoolExecutor(len(instances)) as pool:
        moments = list(pool.map(lambda instance: moment_found(instance, body), instances))
    return [round(moment - started, 3) for moment in moments]


def scenario_instances(engine, work, seconds, servers):
    """Three instances on one PostgreSQL database holding `servers` x 1M pushed hashes: the start
    of the instances that join, lookups at full load on one instance and spread over three, and
    how long a push that lands on any instance takes to be visible on the others."""
    if engine != "postgres":
        return {"skipped": "instances share a database on PostgreSQL only"}
    os.makedirs(os.path.join(work, "a"))
    first = Server(engine, os.path.join(work, "a"))
    first.start()
    pepper = first.pepper()
    samples, push_s = [], []
    for s in range(servers):
        hashes = org_hashes(s, pepper)
        samples.append(hashes[0])
        push_s.append(round(first.push(f"org{s}.example:443", pepper, hashes)[0], 2))
        del hashes
    instances = [first]
    for name in ("b", "c"):
        os.makedirs(os.path.join(work, name))
        instances.append(Server(engine, os.path.join(work, name), database_host=first.config["database_host"]))
    join_s = [round(instance.start(), 2) for instance in instances[1:]]
    unknown = [lookup_hash(f"nobody{n}@nowhere.example", "email", pepper) for n in range(50)]
    body = {"algorithm": "sha256", "pepper": pepper, "addresses": (samples * 50)[:50] + unknown}
    one = oha(first, body, seconds, connections=64)
    with concurrent.futures.ThreadPoolExecutor(len(instances)) as pool:
        spread = list(pool.map(lambda instance: oha(instance, body, seconds, connections=22), instances))
    # A push of 10,000 hashes on each instance in turn, then of 1M on the second: seconds from
    # the pusher's answer until each instance (the pusher first) answers a lookup of one of them.
    visible = []
    for step, (pusher, count) in enumerate([(0, 10_000), (1, 10_000), (2, 10_000), (1, 1_000_000)]):
        hashes = [lookup_hash(f"v{n}@visible{step}.example", "email", pepper) for n in range(count)]
        push_seconds, _ = instances[pusher].push(f"visible{step}.example:443", pepper, hashes)
        probe = {"algorithm": "sha256", "pepper": pepper, "addresses": hashes[-1:]}
        visible.append({"pushed_hashes": count, "pushed_on": "abc"[pusher], "push_s": round(push_seconds, 2),
                        "visible_after_s": dict(zip("abc", seconds_until_found(instances, probe)))})
    rss = [round(instance.status("VmRSS"), 1) for instance in instances]
    for instance in instances:
        instance.stop()
    total = sum(run["requests_per_second"] for run in spread)
    return {
        "instances": len(instances), "pushed_hashes": servers * 1_000_000, "push_s": push_s,
        "joining_instance_start_s": join_s, "rss_mib": rss,
        "one_instance": one, "three_instances": spread,
        "three_instances_requests_per_second": round(total, 1),
        "three_instances_worst_p99_ms": max(run["p99_ms"] for run in spread),
        "three_vs_one": round(total / one["requests_per_second"], 3),
        "visibility": visible,
    }


def scenario_local_changes(engine, work, sizes=(100_000, 1_000_000)):
    """Own 3PIDs changed by a directory sync of 1,000 users (a new e-mail each), with 100k and
    with 1M own 3PIDs: the sync's time (`sync-directory`, another process, reading the whole
    directory) and how long after the sync logged its change each of two running instances on
    the database answers the new addresses. Each instance applies the change for the 3PIDs it
    touched alone; that time must not grow with the table."""
    results = []
    for users in sizes:
        base = os.path.join(work, str(users))
        os.makedirs(base)
        first, _, pepper = server_with_own_3pids(engine, base, users)
        shared = first.config.get("database_host") or os.path.join(first.config["data_dir"], "federated-identity-service.db")
        os.makedirs(os.path.join(base, "second"))
        second = Server(engine, os.path.join(base, "second"), database_host=shared, **{
            key: first.config[key] for key in ("userdb_engine", "userdb_host", "directory_publish_all")})
        second.start()
        changed = range(0, users, users // 1_000)
        db = sqlite3.connect(first.config["userdb_host"])
        db.executemany("UPDATE users SET mail = ? WHERE uid = ?", ((f"changed{n}@bench.example", f"user{n}") for n in changed))
        db.commit()
        db.close()
        probe = {"algorithm": "sha256", "pepper": pepper,
                 "addresses": [lookup_hash(f"changed{n}@bench.example", "email", pepper) for n in list(changed)[-100:]]}
        # Each instance is polled while the sync runs: the wall-clock moment it first answers
        # the new addresses, against the moment the sync logged its change.
        with concurrent.futures.ThreadPoolExecutor(2) as pool:
            seen = [pool.submit(moment_found, instance, probe, 0.01) for instance in (first, second)]
            sync_seconds, report = first.cli("sync-directory")
            seen = [future.result() for future in seen]
        sql = "SELECT MAX(created_at) FROM lookup_changes WHERE kind = 'local'"
        if engine == "postgres":
            logged = int(subprocess.run(["psql", shared, "-At", "-c", sql], check=True, capture_output=True,
                                        text=True).stdout.strip())
        else:
            db = sqlite3.connect(shared)
            logged = db.execute(sql).fetchone()[0]
            db.close()
        first.stop()
        second.stop()
        results.append({"own_3pids": users, "changed_users": len(changed), "sync_s": round(sync_seconds, 2),
                        "sync": json.loads(report),
                        "visible_after_change_logged_s": [round(moment - logged / 1000, 3) for moment in seen]})
    return results


def moment_found(instance, body, interval=0.005, limit=120):
    """The wall-clock time at which `instance` first maps something of `body`, polled every
    `interval` seconds."""
    started = time.perf_counter()
    while not found_count(instance.call("POST", "/_matrix/identity/v2/lookup", body)[1]):
        if time.perf_counter() - started > limit:
            raise RuntimeError(f"not visible after {limit} s")
        time.sleep(interval)
    return time.time()


def scenario_directory(engine, work, users):
    url, base = os.environ["FIS_TEST_LDAP_URL"], os.environ["FIS_TEST_LDAP_BASE"]
    admin, password = os.environ["FIS_TEST_LDAP_ADMIN_DN"], os.environ["FIS_TEST_LDAP_ADMIN_PASSWORD"]
    ou = f"bench{random.getrandbits(32):08x}"
    branch = f"ou={ou},{base}"
    ldif = [f"dn: {branch}\nobjectClass: organizationalUnit\nou: {ou}\n"]
    for n in range(users):
        ldif.append(f"dn: uid=u{n},{branch}\nobjectClass: inetOrgPerson\nuid: u{n}\ncn: u{n}\nsn: u{n}\nmail: u{n}@ldap.example\n")
    started = time.perf_counter()
    subprocess.run(["ldapadd", "-x", "-H", url, "-D", admin, "-w", password], input="\n".join(ldif), text=True,
                   check=True, stdout=subprocess.DEVNULL)
    loading = time.perf_counter() - started
    server = Server(engine, work, userdb_engine="ldap", ldap_uri=url, ldap_base=branch, ldap_user=admin,
                    ldap_password=password, ldap_filter="(objectClass=inetOrgPerson)", directory_publish_all=True)
    server.start()  # the commands work on an existing database: the service creates it
    server.stop()
    first_s, first = server.cli("sync-directory")
    changes = "".join(
        f"dn: uid=u{n},{branch}\nchangetype: modify\nreplace: mail\nmail: changed{n}@ldap.example\n\n"
        for n in range(0, users, 100)
    )
    subprocess.run(["ldapmodify", "-x", "-H", url, "-D", admin, "-w", password], input=changes, text=True,
                   check=True, stdout=subprocess.DEVNULL)
    second_s, second = server.cli("sync-directory")
    return {"users": users, "ldapadd_s": round(loading, 1), "first_sync_s": round(first_s, 2), "first": json.loads(first),
            "incremental_sync_s": round(second_s, 2), "incremental": json.loads(second)}


def machine():
    cpu = next((line.split(":", 1)[1].strip() for line in open("/proc/cpuinfo") if line.startswith("model name")), "?")
    memory = next((int(line.split()[1]) // 1024 // 1024 for line in open("/proc/meminfo") if line.startswith("MemTotal")), 0)
    commit = subprocess.run(["git", "describe", "--always", "--dirty"], cwd=ROOT, capture_output=True, text=True).stdout.strip()
    # The build measured, when it is not this tree's (FIS_BENCH_BINARY, named by FIS_BENCH_LABEL).
    commit = os.environ.get("FIS_BENCH_LABEL", commit)
    return {"date": datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="seconds"), "commit": commit,
            "binary": BINARY, "cpu": cpu, "cores": os.cpu_count(), "memory_gib": memory, "kernel": platform.release(),
            "openssl_sha256_64B_kBps": openssl_speed()}


def openssl_speed():
    """Single-core speed of this machine (`openssl speed -bytes 64 sha256`, in kB/s): machines of
    one kind differ by 2x from week to week, so every run records it."""
    try:
        output = subprocess.run(["openssl", "speed", "-bytes", "64", "-seconds", "3", "sha256"],
                                capture_output=True, text=True, check=True).stdout
        return float(output.strip().splitlines()[-1].split()[-1].rstrip("k"))
    except (OSError, subprocess.CalledProcessError, ValueError, IndexError):
        return None


def main():
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--engines", default="sqlite,postgres")
    parser.add_argument("--scenarios", default="startup,push,lookup,lookup-user,rotation,directory")
    parser.add_argument("--seconds", type=int, default=20, help="duration of each load run")
    parser.add_argument("--ldap-users", type=int, default=100_000)
    parser.add_argument("--scale-servers", type=int, default=10, help="servers x 1M pushed hashes in `scale` and `instances`")
    args = parser.parse_args()
    results = {"machine": machine(), "engines": {}}
    for engine in args.engines.split(","):
        results["engines"][engine] = {}
        for scenario in args.scenarios.split(","):
            with tempfile.TemporaryDirectory(prefix=f"fis-bench-{scenario}-") as work:
                print(f"... {engine} {scenario}", file=sys.stderr, flush=True)
                if scenario == "startup":
                    outcome = scenario_startup(engine, work)
                elif scenario == "push":
                    outcome = scenario_push(engine, work)
                elif scenario == "push-latency":
                    outcome = scenario_push_latency(engine, work)
                elif scenario == "lookup":
                    outcome = scenario_lookup(engine, work, args.seconds)
                elif scenario == "lookup-user":
                    outcome = scenario_lookup_user(engine, work, args.seconds)
                elif scenario == "rotation":
                    outcome = scenario_rotation(engine, work, args.seconds)
                elif scenario == "scale":
                    outcome = scenario_scale(engine, work, args.seconds, args.scale_servers)
                elif scenario == "local-changes":
                    outcome = scenario_local_changes(engine, work)
                elif scenario == "instances":
                    outcome = scenario_instances(engine, work, args.seconds, args.scale_servers)
                elif scenario == "directory":
                    outcome = scenario_directory(engine, work, args.ldap_users)
                else:
                    raise SystemExit(f"unknown scenario {scenario}")
                results["engines"][engine][scenario] = outcome
                print(json.dumps({engine: {scenario: outcome}}), file=sys.stderr, flush=True)
    os.makedirs(os.path.join(ROOT, "bench", "results"), exist_ok=True)
    name = f"{results['machine']['date'][:19].replace(':', '')}-{results['machine']['commit']}.json"
    with open(os.path.join(ROOT, "bench", "results", name), "w") as file:
        json.dump(results, file, indent=2)
    print(json.dumps(results, indent=2))


if __name__ == "__main__":
    main()
