#!/usr/bin/env python3
"""Tests of legacy_example (run by ctest; python3 standard library only).

  check_example.py middle --source DIR --link-info FILE
      The middle is plain C++ shared unchanged: no file of middle/ includes a fiberloop
      header (or a top's or bottom's), legacy_middle links no fiberloop library, every
      variant links legacy_middle and compiles no middle source itself, and each middle
      function has the same machine-code size in every binary as in the archive.

  check_example.py serve --bin-dir DIR
      Each variant starts on port 0 in front of a real backend, answers /order with
      byte-identical 200s (HTTP/1.1 keep-alive, HTTP/1.0 keep-alive, Connection: close),
      404/400 for bad requests, 502 when the backend is down, refuses bad flags with
      exit 1, and exits 0 on SIGTERM with a connection open.

  check_example.py cache --bin-dir DIR
      --cache: two real memcached servers (started here on free ports; the test fails
      saying why when memcached cannot run). A key written by one variant is read by
      the other: legacy_threads (libmemcached) fills the cache, then legacy_fibers
      (MemcacheClient), whose backend is a port where nothing listens, answers every
      order byte-identically from cache hits alone; and the reverse, fibers filling,
      threads and pool reading. Both servers hold keys and count the hits. A cache
      down (refused) or silent (never answers) costs nothing but time: the backend
      answers. A bad --cache is refused with exit 1.

  check_example.py inventory --bin-dir DIR
      --inventory sqlite:FILE: legacy_inventory_load fills a temporary SQLite file with
      the backend's catalogue, and every variant, reading it through its SQL bottom
      (blocking sqlite3 behind a hand-written pool; fiberloop::SqlDatabase), answers 40
      orders byte-identically to legacy_threads in front of the HTTP backend, also with
      60 clients at once. A row changed in the file changes every variant's answer the
      same way; a sku missing from the table or a missing file is a 502; bad URLs and
      --inventory with --backend are refused with exit 1.
"""
import argparse
import json
import os
import re
import shutil
import signal
import socket
import sqlite3
import subprocess
import sys
import tempfile
import threading
import time
import urllib.parse
from pathlib import Path

VARIANTS = ["legacy_threads", "legacy_pool", "legacy_fibers"]
# The middle's functions, handle_request -> func1 ... func10 (middle/order.hpp).
MIDDLE_FUNCTIONS = ["legacy::handle_request", "legacy::detail::parse_target", "legacy::detail::route",
                    "legacy::detail::validate_params", "legacy::detail::quote_order",
                    "legacy::detail::build_cart", "legacy::detail::price_cart", "legacy::detail::check_stock",
                    "legacy::detail::fetch_inventory", "legacy::detail::checked_get",
                    "legacy::detail::call_backend"]
FORBIDDEN_LINKS = {"fiberloop", "fiberloop::fiberloop", "fiberloop_adapters", "fiberloop_fibers",
                   "fiberloop_runtime", "Boost::fiber", "Boost::context"}

failures = []
checks = [0]


def check(condition, message):
    checks[0] += 1
    if not condition:
        failures.append(message)
        print(f"FAIL: {message}", flush=True)
    return condition


# ---- middle -------------------------------------------------------------------------

def function_sizes(path):
    """{function name: size} of the middle's functions defined in an object, archive or binary."""
    out = subprocess.run(["nm", "-C", "-S", "--defined-only", str(path)], capture_output=True, text=True,
                         check=True).stdout
    sizes = {}
    for line in out.splitlines():
        parts = line.split(None, 3)
        if len(parts) != 4 or parts[2] not in "tT":
            continue
        name = parts[3]  # with its parameters, and " [clone .cold]" for a split-off part
        if name.split("(")[0] in MIDDLE_FUNCTIONS:
            sizes.setdefault(name, set()).add(int(parts[1], 16))
    return sizes


def run_middle(args):
    middle = Path(args.source) / "middle"
    include = re.compile(r'^\s*#\s*include\s*[<"]([^>"]+)[>"]', re.M)
    files = sorted(p for p in middle.rglob("*") if p.is_file())
    check(len(files) >= 5, f"expected the middle's sources in {middle}, found {len(files)} files")
    for path in files:
        for header in include.findall(path.read_text(errors="replace")):
            check("fiberloop" not in header, f"{path} includes {header}: the middle must not know fiberloop")
            check(not re.search(r"(^|/)(top|bottom|support)/", header),
                  f"{path} includes {header}: the middle must not reach into a top or a bottom")

    info = dict(line.split("=", 1) for line in Path(args.link_info).read_text().splitlines() if "=" in line)
    middle_links = set(filter(None, info["middle_links"].split(";")))
    check(not middle_links & FORBIDDEN_LINKS,
          f"legacy_middle links {sorted(middle_links & FORBIDDEN_LINKS)}: it must not depend on fiberloop")
    archive = Path(info["middle_archive"])
    archive_sizes = function_sizes(archive)
    for name in MIDDLE_FUNCTIONS:
        check(any(k.startswith(name + "(") for k in archive_sizes), f"{archive} does not define {name}")
    for name, size in archive_sizes.items():
        check(len(size) == 1, f"{archive} defines {name} more than once: {sorted(size)}")

    for variant in VARIANTS:
        links = info[f"{variant}_links"].split(";")
        check("legacy_middle" in links, f"{variant} does not link legacy_middle (links: {links})")
        sources = [s for s in info[f"{variant}_sources"].split(";") if s]
        own_middle = [s for s in sources if "middle/" in s.replace("\\", "/")]
        check(not own_middle, f"{variant} compiles middle sources itself: {own_middle}")
        binary = Path(info[f"{variant}_file"])
        sizes = function_sizes(binary)
        check(sizes == archive_sizes,
              f"{variant}: the middle's functions differ from legacy_middle's (name: sizes): "
              f"{ {k: sorted(v) for k, v in sizes.items() if archive_sizes.get(k) != v} } vs "
              f"{ {k: sorted(v) for k, v in archive_sizes.items() if sizes.get(k) != v} }")


# ---- serve --------------------------------------------------------------------------

class Server:
    def __init__(self, argv, name):
        self.name = name
        self.proc = subprocess.Popen(argv, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
        line = self.proc.stdout.readline()  # the program prints this line once ready
        match = re.fullmatch(r"listening on 127\.0\.0\.1:(\d+)\n", line)
        if not match:
            self.proc.kill()
            raise RuntimeError(f"{name}: expected 'listening on 127.0.0.1:<port>', got {line!r} "
                               f"(stderr: {self.proc.stderr.read()[:300]!r})")
        self.port = int(match.group(1))

    def terminate(self, timeout=5.0):
        """SIGTERM; returns the exit code (None if it had to be killed)."""
        self.proc.send_signal(signal.SIGTERM)
        try:
            return self.proc.wait(timeout=timeout)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait()
            return None
        finally:
            self.proc.stdout.close()
            self.proc.stderr.close()


def read_response(sock, buffer):
    """One HTTP response (bytes) from sock; returns (response, rest of the buffer)."""
    while b"\r\n\r\n" not in buffer:
        chunk = sock.recv(65536)
        if not chunk:
            raise ConnectionError(f"closed before a full header: {buffer[:200]!r}")
        buffer += chunk
    head_end = buffer.index(b"\r\n\r\n") + 4
    length = re.search(rb"\r\ncontent-length:\s*(\d+)", buffer[:head_end], re.I)
    total = head_end + (int(length.group(1)) if length else 0)
    while len(buffer) < total:
        chunk = sock.recv(65536)
        if not chunk:
            raise ConnectionError("closed in the body")
        buffer += chunk
    return buffer[:total], buffer[total:]


def exchange(port, requests):
    """Sends the requests one after another on one connection; returns the raw responses."""
    with socket.create_connection(("127.0.0.1", port), timeout=5) as sock:
        responses, buffer = [], b""
        for request in requests:
            sock.sendall(request)
            response, buffer = read_response(sock, buffer)
            responses.append(response)
        return responses


def get(target, version="1.1", extra=""):
    return f"GET {target} HTTP/{version}\r\nHost: test\r\n{extra}\r\n".encode()


def status_of(response):
    return int(response.split(b" ", 2)[1])


def body_of(response):
    return response.split(b"\r\n\r\n", 1)[1]


def free_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def check_variant(variant, binary, backend_port):
    server = Server([str(binary), "--port", "0", "--backend", f"127.0.0.1:{backend_port}"], variant)
    answers = {}
    idle = None
    try:
        first, second = exchange(server.port, [get("/order?customer=42&items=3"), get("/order?customer=7")])
        answers["order"] = first
        check(status_of(first) == 200, f"{variant}: /order?customer=42&items=3 -> {first[:60]!r}")
        if status_of(first) == 200:
            quote = json.loads(body_of(first))
            check(quote["customer"]["id"] == 42 and len(quote["lines"]) == 3,
                  f"{variant}: quote for customer 42 with 3 items expected, got {quote}")
            check(quote["total_cents"] == quote["subtotal_cents"] - quote["discount_cents"] + quote["tax_cents"],
                  f"{variant}: total does not add up: {quote}")
            check(b"\r\nContent-Type: application/json\r\n" in first, f"{variant}: not JSON: {first[:200]!r}")
        check(status_of(second) == 200 and len(json.loads(body_of(second))["lines"]) == 3,
              f"{variant}: second request on the kept-alive connection (items default 3): {second[:200]!r}")

        (http10,) = exchange(server.port, [get("/order?customer=42&items=3", "1.0", "Connection: keep-alive\r\n")])
        answers["http1.0"] = http10
        check(b"\r\nConnection: keep-alive\r\n" in http10, f"{variant}: HTTP/1.0 keep-alive not kept: {http10[:200]!r}")
        (closing,) = exchange(server.port, [get("/order?customer=42&items=3", extra="Connection: close\r\n")])
        answers["close"] = closing
        check(b"\r\nConnection: close\r\n" in closing, f"{variant}: Connection: close not honoured: {closing[:200]!r}")

        bad = {"/nope": 404, "/order/x?customer=1": 404, "/order?customer=abc": 400, "/order": 400,
               "/order?customer=1&items=21": 400, "/order?customer=0": 400, "/order?customer=%zz": 400,
               "/order?customer=1&customer=2": 400}
        responses = exchange(server.port, [get(t) for t in bad] + [
            b"POST /order?customer=1 HTTP/1.1\r\nHost: test\r\nContent-Length: 0\r\n\r\n"])
        for (target, want), response in zip(list(bad.items()) + [("POST /order", 404)], responses):
            check(status_of(response) == want, f"{variant}: {target} -> {status_of(response)}, want {want}")
            check(b"error" in body_of(response), f"{variant}: {target}: no error message in {response[:200]!r}")

        idle = socket.create_connection(("127.0.0.1", server.port), timeout=5)  # open across the stop
    finally:
        rc = server.terminate()
        if idle:
            idle.close()
    check(rc == 0, f"{variant}: exit code {rc} after SIGTERM with a connection open, want 0")
    return answers


def run_serve(args):
    bin_dir = Path(args.bin_dir).resolve()
    backend = Server([str(bin_dir / "legacy_backend"), "--port", "0", "--delay-ms", "1"], "legacy_backend")
    try:
        answers = {}
        for variant in VARIANTS:
            try:
                answers[variant] = check_variant(variant, bin_dir / variant, backend.port)
            except (OSError, RuntimeError, ValueError) as e:
                check(False, f"{variant}: {type(e).__name__}: {e}")
        # Every variant's answers are the same bytes.
        reference = answers.get("legacy_threads", {})
        for variant, got in answers.items():
            for key, response in got.items():
                check(response == reference.get(key),
                      f"{variant} answers {key} differently from legacy_threads:\n  {response!r}\n  "
                      f"{reference.get(key)!r}")

        down = free_port()  # nothing listens there: the bottom's failure becomes a 502
        for variant in VARIANTS:
            server = Server([str(bin_dir / variant), "--port", "0", "--backend", f"127.0.0.1:{down}"], variant)
            try:
                (response,) = exchange(server.port, [get("/order?customer=1")])
                check(status_of(response) == 502, f"{variant}: backend down -> {response[:80]!r}, want 502")
            finally:
                check(server.terminate() == 0, f"{variant}: no clean exit after the 502 test")
            for bad in (["--port"], ["--port", "70000", "--backend", "127.0.0.1:1"], ["--bogus", "1"],
                        ["--port", "0"]):
                rc = subprocess.run([str(bin_dir / variant), *bad], capture_output=True, timeout=5).returncode
                check(rc == 1, f"{variant} {' '.join(bad)}: exit code {rc}, want 1")
    finally:
        check(backend.terminate() == 0, "legacy_backend: no clean exit on SIGTERM")


# ---- cache --------------------------------------------------------------------------

# Orders whose inventory targets differ (the cart's skus follow the customer and the
# item count): enough keys that both servers get some, so a placement the two bottoms
# disagree on leaves some order without its cached answer.
CACHED_ORDERS = [f"/order?customer={c}&items={1 + c % 5}" for c in range(1, 41)]


class Memcached:
    """A real memcached on a free loopback port, as tests/support/memcached_server.hpp starts it."""

    def __init__(self):
        binary = shutil.which("memcached") or "/usr/bin/memcached"
        if not os.access(binary, os.X_OK):
            raise RuntimeError("memcached is not installed: install Debian's memcached (apt-get install memcached)")
        self.port = free_port()
        argv = [binary, "-l", "127.0.0.1", "-p", str(self.port), "-U", "0", "-t", "1", "-m", "64"]
        if os.geteuid() == 0:
            argv[1:1] = ["-u", "root"]  # memcached refuses to run as root without it
        self.proc = subprocess.Popen(argv, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
        deadline = time.monotonic() + 5
        while True:
            try:
                if self.command(b"version\r\n").startswith(b"VERSION "):
                    return
            except OSError:
                pass
            if self.proc.poll() is not None:
                raise RuntimeError(f"memcached on port {self.port} exited with {self.proc.returncode}: "
                                   f"{self.proc.stderr.read()[:300]!r}")
            if time.monotonic() > deadline:
                self.stop()
                raise RuntimeError(f"memcached on port {self.port} did not answer 'version' within 5 s")
            time.sleep(0.02)

    def command(self, line, until=b"\r\n"):
        """Sends one command; returns the reply up to and including `until`."""
        with socket.create_connection(("127.0.0.1", self.port), timeout=2) as sock:
            sock.sendall(line)
            reply = b""
            while not reply.endswith(until):
                chunk = sock.recv(65536)
                if not chunk:
                    raise ConnectionError(f"memcached closed after {reply[:100]!r}")
                reply += chunk
            return reply

    def stats(self):
        reply = self.command(b"stats\r\n", until=b"END\r\n").decode()
        return {m.group(1): int(m.group(2)) for m in re.finditer(r"STAT (\w+) (\d+)\r\n", reply)}

    def keys(self):
        """The keys it holds (memcached's lru_crawler metadump)."""
        reply = self.command(b"lru_crawler metadump all\r\n", until=b"END\r\n").decode()
        return {urllib.parse.unquote(k) for k in re.findall(r"^key=(\S+)", reply, re.M)}  # it %-encodes them

    def flush(self):
        check(self.command(b"flush_all\r\n") == b"OK\r\n", f"memcached {self.port}: flush_all failed")

    def stop(self):
        self.proc.kill()
        self.proc.wait()
        self.proc.stderr.close()


def orders_answered(variant, binary, backend_port, cache, orders):
    """{order: raw response} from `variant` with --cache `cache`; exits 0 on SIGTERM."""
    server = Server([str(binary), "--port", "0", "--backend", f"127.0.0.1:{backend_port}", "--cache", cache],
                    variant)
    try:
        return dict(zip(orders, exchange(server.port, [get(o) for o in orders])))
    finally:
        check(server.terminate() == 0, f"{variant} --cache {cache}: no clean exit on SIGTERM")


def check_cross_variant(writer, readers, bin_dir, backend_port, servers):
    """`writer` fills the cache from the backend; each reader, with no backend, must
    answer every order byte-identically from the cache alone."""
    cache = ",".join(f"127.0.0.1:{m.port}" for m in servers)
    for m in servers:
        m.flush()
    filled = orders_answered(writer, bin_dir / writer, backend_port, cache, CACHED_ORDERS)
    for order, response in filled.items():
        check(status_of(response) == 200, f"{writer} --cache: {order} -> {response[:80]!r}, want 200")
    keys = [m.keys() for m in servers]
    check(sum(map(len, keys)) >= len(CACHED_ORDERS) // 2,
          f"{writer} cached {sum(map(len, keys))} answers for {len(CACHED_ORDERS)} orders: {keys}")
    check(all(keys), f"{writer}: a cache server got no key (keys per server: {[len(k) for k in keys]}); "
                     "the test needs both to see the placement agree")
    for k in set().union(*keys):
        check(k.startswith("legacy:/inventory?sku="), f"{writer} cached an unexpected key {k!r}")

    down = free_port()  # the reader's backend: only a cache hit can answer
    for reader in readers:
        hits_before = [m.stats()["get_hits"] for m in servers]
        read = orders_answered(reader, bin_dir / reader, down, cache, CACHED_ORDERS)
        hits = [m.stats()["get_hits"] - before for m, before in zip(servers, hits_before)]
        for order in CACHED_ORDERS:
            check(read.get(order) == filled[order],
                  f"{reader} did not answer {order} from what {writer} cached (its backend is down): "
                  f"{read.get(order, b'')[:120]!r}")
        check(all(hits), f"{reader}: cache hits per server {hits}, want hits on both")


def check_cache_failures(bin_dir, backend_port):
    """A cache that refuses or never answers: the backend answers, within a bounded time."""
    silent = socket.socket()  # listens, never accepts: connects succeed, replies never come
    silent.bind(("127.0.0.1", 0))
    silent.listen(64)
    try:
        caches = (("refused", f"127.0.0.1:{free_port()}"), ("silent", f"127.0.0.1:{silent.getsockname()[1]}"))
        for name, cache in caches:
            for variant in VARIANTS:
                started = time.monotonic()
                answers = orders_answered(variant, bin_dir / variant, backend_port, cache, CACHED_ORDERS[:5])
                took = time.monotonic() - started
                for order, response in answers.items():
                    check(status_of(response) == 200, f"{variant}, cache {name}: {order} -> {response[:80]!r}")
                # 5 orders x (get + set) at a 100 ms cache timeout is 1 s at worst; dead-server
                # marking makes it far less. 4 s leaves room for a loaded machine.
                check(took < 4, f"{variant}, cache {name}: 5 orders took {took:.1f} s, want < 4 s")
    finally:
        silent.close()


def run_cache(args):
    bin_dir = Path(args.bin_dir).resolve()
    servers = []
    try:
        servers = [Memcached(), Memcached()]
    except RuntimeError as e:
        check(False, f"cannot start the memcached servers the test needs: {e}")
        for m in servers:
            m.stop()
        return
    backend = Server([str(bin_dir / "legacy_backend"), "--port", "0", "--delay-ms", "1"], "legacy_backend")
    try:
        check_cross_variant("legacy_threads", ["legacy_fibers"], bin_dir, backend.port, servers)
        check_cross_variant("legacy_fibers", ["legacy_threads", "legacy_pool"], bin_dir, backend.port, servers)
        check_cache_failures(bin_dir, backend.port)
        for variant in VARIANTS:
            for bad in ("127.0.0.1", "127.0.0.1:1,", "127.0.0.1:0", ",127.0.0.1:1"):
                rc = subprocess.run([str(bin_dir / variant), "--port", "0", "--backend", "127.0.0.1:1",
                                     "--cache", bad], capture_output=True, timeout=5).returncode
                check(rc == 1, f"{variant} --cache {bad}: exit code {rc}, want 1")
    finally:
        check(backend.terminate() == 0, "legacy_backend: no clean exit on SIGTERM")
        for m in servers:
            m.stop()


# ---- inventory ----------------------------------------------------------------------

def answers_of(variant, argv, orders, clients=1):
    """[(order, raw response)] from `variant` started with `argv`, the orders spread over
    `clients` connections at once; exits 0 on SIGTERM."""
    server = Server(argv, variant)
    results, errors = [], []

    def client(share):
        try:
            results.extend(zip(share, exchange(server.port, [get(o) for o in share])))
        except OSError as e:
            errors.append(f"{type(e).__name__}: {e}")

    try:
        shares = [orders[i::clients] for i in range(clients)]
        threads = [threading.Thread(target=client, args=(share,)) for share in shares if share]
        for t in threads:
            t.start()
        for t in threads:
            t.join()
    finally:
        check(server.terminate() == 0, f"{variant} {' '.join(argv[1:])}: no clean exit on SIGTERM")
    check(not errors, f"{variant}: client errors {errors[:3]}")
    return results


def run_inventory(args):
    bin_dir = Path(args.bin_dir).resolve()
    with tempfile.TemporaryDirectory(prefix="legacy-inventory-") as tmp:
        db = Path(tmp) / "inventory.db"
        load = subprocess.run([str(bin_dir / "legacy_inventory_load"), f"sqlite:{db}", "--skus", "100000"],
                              capture_output=True, text=True, timeout=60)
        if not check(load.returncode == 0, f"legacy_inventory_load: exit {load.returncode}: {load.stderr[:300]}"):
            return
        with sqlite3.connect(db) as con:
            check(con.execute("SELECT count(*), min(sku), max(sku) FROM inventory").fetchone() == (100000, 1, 100000),
                  "legacy_inventory_load did not load skus 1..100000")
        url = f"sqlite:{db}"

        backend = Server([str(bin_dir / "legacy_backend"), "--port", "0", "--delay-ms", "1"], "legacy_backend")
        try:
            reference = dict(answers_of("legacy_threads", [str(bin_dir / "legacy_threads"), "--port", "0",
                                                           "--backend", f"127.0.0.1:{backend.port}"], CACHED_ORDERS))
        finally:
            check(backend.terminate() == 0, "legacy_backend: no clean exit on SIGTERM")
        for order in CACHED_ORDERS:
            check(status_of(reference.get(order, b" 0")) == 200, f"reference {order}: {reference.get(order)!r:.120}")

        # The database answers as the HTTP backend did, alone and with 60 clients at once.
        for variant in VARIANTS:
            argv = [str(bin_dir / variant), "--port", "0", "--inventory", url]
            for clients in (1, 60):
                orders = CACHED_ORDERS * (3 if clients > 1 else 1)
                got = answers_of(variant, argv, orders, clients)
                check(len(got) == len(orders), f"{variant} --inventory ({clients} clients): {len(got)} answers "
                                               f"for {len(orders)} orders")
                wrong = [(order, response) for order, response in got if response != reference[order]]
                check(not wrong, f"{variant} --inventory ({clients} clients) answers {len(wrong)} orders unlike the "
                                 f"HTTP backend, e.g. {wrong[0][0] if wrong else ''}:\n  "
                                 f"{wrong[0][1][:200] if wrong else b''!r}\n  "
                                 f"{reference[wrong[0][0]][:200] if wrong else b''!r}")

        # The answers follow the table: a changed row, a missing row.
        order, other = CACHED_ORDERS[0], CACHED_ORDERS[1]
        lines = json.loads(body_of(reference[order]))["lines"]
        changed, removed = lines[0]["sku"], json.loads(body_of(reference[other]))["lines"][0]["sku"]
        with sqlite3.connect(db) as con:
            con.execute("UPDATE inventory SET stock = 0, price_cents = 4321 WHERE sku = ?", (changed,))
            con.execute("DELETE FROM inventory WHERE sku = ?", (removed,))
        answers = {}
        for variant in VARIANTS:
            got = dict(answers_of(variant, [str(bin_dir / variant), "--port", "0", "--inventory", url], [order, other]))
            answers[variant] = got
            if check(status_of(got.get(order, b" 0")) == 200, f"{variant}: {order} -> {got.get(order)!r:.120}"):
                line = json.loads(body_of(got[order]))["lines"][0]
                check(line["sku"] == changed and line["unit_cents"] == 4321 and line["available"] is False,
                      f"{variant}: sku {changed} at 4321 cents and out of stock in the table, answered {line}")
            check(status_of(got.get(other, b" 0")) == 502,
                  f"{variant}: sku {removed} is not in the table: {other} -> {got.get(other)!r:.120}, want 502")
        for variant in VARIANTS[1:]:
            check(answers[variant].get(order) == answers[VARIANTS[0]].get(order),
                  f"{variant} answers {order} from the changed table unlike {VARIANTS[0]}")

        missing = f"sqlite:{Path(tmp) / 'no-such-dir' / 'inventory.db'}"
        for variant in VARIANTS:
            got = dict(answers_of(variant, [str(bin_dir / variant), "--port", "0", "--inventory", missing], [order]))
            check(status_of(got.get(order, b" 0")) == 502,
                  f"{variant} --inventory {missing}: {got.get(order)!r:.120}, want 502")
            for bad in (["--inventory", "sqlite:"], ["--inventory", "sqlite::memory:"],
                        ["--inventory", "postgres://h/db"], ["--inventory", "mysql://"],
                        ["--inventory", "mysql://u@h:0/db"], ["--inventory", "mysql://u@h:/db"],
                        ["--inventory", "mysql://u%zz@h/db"], ["--inventory", url, "--backend", "127.0.0.1:1"]):
                rc = subprocess.run([str(bin_dir / variant), "--port", "0", *bad], capture_output=True,
                                    timeout=5).returncode
                check(rc == 1, f"{variant} {' '.join(bad)}: exit code {rc}, want 1")


# ---- deadline ------------------------------------------------------------------------

def run_deadline(args):
    """legacy_fibers --deadline-ms bounds each request: a slow backend answers too late."""
    bin_dir = Path(args.bin_dir).resolve()
    backend = Server([str(bin_dir / "legacy_backend"), "--port", "0", "--delay-ms", "1500"], "legacy_backend")
    try:
        for deadline_ms, want_cut in ((200, True), (20000, False)):
            server = Server([str(bin_dir / "legacy_fibers"), "--port", "0", "--backend", f"127.0.0.1:{backend.port}",
                             "--deadline-ms", str(deadline_ms), "--watchdog-ms", "1000"], "legacy_fibers")
            try:
                started = time.monotonic()
                (response,) = exchange(server.port, [get("/order?customer=42&items=1")])
                took = time.monotonic() - started
                if want_cut:
                    check(status_of(response) in (502, 504),
                          f"--deadline-ms {deadline_ms}: {response[:80]!r}, want the bottom's failure (502) or 504")
                    check(took < 1.2, f"--deadline-ms {deadline_ms}: answered after {took:.2f} s, past the "
                                      "1.5 s backend delay: the deadline did not cut the wait")
                else:
                    check(status_of(response) == 200, f"--deadline-ms {deadline_ms}: {response[:80]!r}, want 200")
            finally:
                check(server.terminate() == 0, f"--deadline-ms {deadline_ms}: no clean exit on SIGTERM")
        rc = subprocess.run([str(bin_dir / "legacy_fibers"), "--port", "0", "--backend", "127.0.0.1:1",
                             "--deadline-ms", "x"], capture_output=True, timeout=5).returncode
        check(rc == 1, f"--deadline-ms x: exit code {rc}, want 1")
    finally:
        check(backend.terminate() == 0, "legacy_backend: no clean exit on SIGTERM")


def main():
    ap = argparse.ArgumentParser()
    sub = ap.add_subparsers(dest="command", required=True)
    m = sub.add_parser("middle")
    m.add_argument("--source", required=True)
    m.add_argument("--link-info", required=True)
    s = sub.add_parser("serve")
    s.add_argument("--bin-dir", required=True)
    c = sub.add_parser("cache")
    c.add_argument("--bin-dir", required=True)
    i = sub.add_parser("inventory")
    i.add_argument("--bin-dir", required=True)
    d = sub.add_parser("deadline")
    d.add_argument("--bin-dir", required=True)
    args = ap.parse_args()
    started = time.monotonic()
    {"middle": run_middle, "serve": run_serve, "cache": run_cache, "inventory": run_inventory,
     "deadline": run_deadline}[args.command](args)
    print(f"{args.command}: {checks[0]} checks, {len(failures)} failure(s) in {time.monotonic() - started:.1f} s", flush=True)
    return 1 if failures else 0


if __name__ == "__main__":
    sys.exit(main())
