#!/usr/bin/env python3
"""The legacy-example comparison: thread per connection, thread pool and fiberloop.

For every (variant, concurrency) point in turn: a fresh slow backend and a fresh
server (so its peak RSS is the point's own), wrk against it, the server's numbers
from /proc, then TERM (KILL after a deadline). Writes compare.csv, per-variant plot
data and PNG plots (gnuplot) into the output directory, prints a table and the
issue's target checks. A variant that fails at a point is a row with status
failed:<reason> and whatever could still be measured, never a missing row.

Run through bench/run.sh, which builds the binaries; python3 standard library only.
"""
import argparse
import csv
import math
import os
import re
import resource
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
from pathlib import Path

VARIANTS = ["legacy_threads", "legacy_pool", "legacy_fibers"]
# A variant named "<program>+diag" runs that program with fiberloop's diagnostics on
# (issue 12): the blocking-call watchdog and a per-request Deadline longer than wrk's
# timeout, so it cuts nothing a client still waits for; the run shows what they cost.
DIAG_FLAGS = ["--watchdog-ms", "100", "--deadline-ms", "3000"]
DEFAULT_CONCURRENCIES = [10, 100, 1000, 10000]
SMOKE_CONCURRENCIES = [10, 100]
PATH = "/order?customer=42&items=3"
# One row per variant x concurrency; "NA" where a failed point could not measure.
COLUMNS = ["variant", "concurrency", "duration_s", "placement", "status", "requests", "req_per_s",
           "p50_ms", "p99_ms", "max_ms", "connect_errors", "read_errors", "write_errors",
           "timeout_errors", "non_2xx", "served_conns", "peak_rss_kib", "cpu_s_per_1k_req",
           "ctx_switches_per_req"]
NUMERIC_COLUMNS = COLUMNS[5:]
NA = "NA"

LISTEN_RE = re.compile(rb"listening on ([0-9.]+):([0-9]+)")
CLK_TCK = os.sysconf("SC_CLK_TCK")


def log(msg=""):
    print(msg, flush=True)


# ---- processes ----------------------------------------------------------------------

_live = []  # every Popen we started and have not reaped yet


def _start(cmd, log_path, stdout_path=None):
    """Starts cmd in its own process group, output to files (no pipe can fill up)."""
    out = open(stdout_path or log_path, "wb")
    err = out if stdout_path is None else open(log_path, "wb")
    try:
        proc = subprocess.Popen(cmd, stdin=subprocess.DEVNULL, stdout=out, stderr=err,
                                start_new_session=True)
    finally:
        out.close()
        if err is not out:
            err.close()
    _live.append(proc)
    return proc


def _reap(proc, timeout_s):
    """Waits for proc like Popen.wait, but with wait4, keeping its resource usage (all
    its threads, ended ones too) in proc.rusage. Returns False on timeout."""
    if proc.returncode is not None:
        return True
    deadline = time.monotonic() + timeout_s
    while True:
        try:
            pid, status, usage = os.wait4(proc.pid, os.WNOHANG)
        except ChildProcessError:  # reaped elsewhere (Popen.poll)
            proc.poll()
            return True
        if pid == proc.pid:
            proc.returncode = os.waitstatus_to_exitcode(status)
            proc.rusage = usage
            return True
        if time.monotonic() > deadline:
            return False
        time.sleep(0.01)


def stop(proc, deadline_s=3.0):
    """TERM, then KILL after the deadline. Returns True when TERM was enough."""
    if proc is None:
        return True
    graceful = True
    if proc.returncode is None:
        try:
            os.killpg(proc.pid, signal.SIGTERM)
        except ProcessLookupError:
            pass
        graceful = _reap(proc, deadline_s)
    # KILL the group even after a clean exit: nothing it forked may outlive it.
    try:
        os.killpg(proc.pid, signal.SIGKILL)
    except (ProcessLookupError, PermissionError):
        pass
    _reap(proc, 10)
    if proc in _live:
        _live.remove(proc)
    return graceful


def stop_all():
    for proc in list(_live):
        stop(proc, deadline_s=1.0)


def _on_signal(signum, _frame):
    # Unwinds through main's finally (stop_all), so no process is left behind.
    raise SystemExit(128 + signum)


def wait_listening(proc, stdout_path, timeout_s):
    """Port from the server's `listening on` line, or (None, reason)."""
    deadline = time.monotonic() + timeout_s
    while True:
        try:
            match = LISTEN_RE.search(Path(stdout_path).read_bytes())
        except FileNotFoundError:
            match = None
        if match:
            return int(match.group(2)), None
        rc = proc.poll()
        if rc is not None:
            return None, f"exited-at-startup({describe_rc(rc)})"
        if time.monotonic() > deadline:
            return None, f"no-listening-line-in-{timeout_s:g}s"
        time.sleep(0.01)


def describe_rc(rc):
    if rc < 0:
        try:
            return signal.Signals(-rc).name
        except ValueError:
            return f"signal {-rc}"
    return f"exit {rc}"


# ---- /proc --------------------------------------------------------------------------

def cpu_seconds(pid):
    """utime + stime of the whole process (all its threads, live and ended)."""
    try:
        text = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return None
    fields = text[text.rindex(")") + 2:].split()
    # Fields 14 and 15 of proc(5); fields[0] is field 3 (state).
    return (int(fields[11]) + int(fields[12])) / CLK_TCK


def peak_rss_kib(pid):
    try:
        for line in Path(f"/proc/{pid}/status").read_text().splitlines():
            if line.startswith("VmHWM:"):
                return int(line.split()[1])
    except OSError:
        pass
    return None


# ---- wrk ----------------------------------------------------------------------------

UNIT_MS = {"us": 1e-3, "ms": 1.0, "s": 1e3, "m": 60e3, "h": 3600e3}


def to_ms(text):
    match = re.fullmatch(r"([0-9.]+)(us|ms|s|m|h)", text)
    return float(match.group(1)) * UNIT_MS[match.group(2)] if match else None


def parse_wrk(out):
    """The numbers of wrk --latency's report; a missing number stays None."""
    res = {"requests": None, "req_per_s": None, "mean_ms": None, "p50_ms": None, "p99_ms": None, "max_ms": None,
           "connect_errors": 0, "read_errors": 0, "write_errors": 0, "timeout_errors": 0,
           "non_2xx": 0}
    match = re.search(r"^\s*Latency\s+(\S+)\s+(\S+)\s+(\S+)", out, re.M)
    if match:
        res["mean_ms"] = to_ms(match.group(1))
        res["max_ms"] = to_ms(match.group(3))
    for pct, key in (("50", "p50_ms"), ("99", "p99_ms")):
        match = re.search(rf"^\s*{pct}(?:\.0+)?%\s+(\S+)", out, re.M)
        if match:
            res[key] = to_ms(match.group(1))
    match = re.search(r"^\s*(\d+) requests in", out, re.M)
    if match:
        res["requests"] = int(match.group(1))
    else:
        # No report at all (wrk failed to start): the error counts are unknown, not zero.
        for key in ("connect_errors", "read_errors", "write_errors", "timeout_errors", "non_2xx"):
            res[key] = None
    match = re.search(r"^Requests/sec:\s+([0-9.]+)", out, re.M)
    if match:
        res["req_per_s"] = float(match.group(1))
    match = re.search(r"Socket errors: connect (\d+), read (\d+), write (\d+), timeout (\d+)", out)
    if match:
        for i, key in enumerate(("connect_errors", "read_errors", "write_errors", "timeout_errors")):
            res[key] = int(match.group(i + 1))
    # wrk counts responses with status > 399; the service sends no 3xx, so these are the non-2xx.
    match = re.search(r"Non-2xx or 3xx responses: (\d+)", out)
    if match:
        res["non_2xx"] = int(match.group(1))
    return res


# ---- one point ----------------------------------------------------------------------

class Setup:
    def __init__(self, args, bin_dir, out_dir):
        self.args = args
        self.bin_dir = bin_dir
        self.out_dir = out_dir
        self.logs = out_dir / "logs"
        self.logs.mkdir(parents=True, exist_ok=True)
        pinned = not args.unpinned and (os.cpu_count() or 1) > 1 and shutil.which("taskset")
        self.pinned = bool(pinned)
        self.server_pin = ["taskset", "-c", "0"] if pinned else []
        self.load_pin = ["taskset", "-c", "1"] if pinned else []
        self.backend = None
        self.backend_port = None
        self.memcached = []  # --cache: [(process, port)]

    def placement(self):
        cache = " and the two memcached" if self.args.cache else ""
        bottom = "the database" if self.args.inventory else "backend"
        if self.pinned:
            return f"server pinned to CPU 0, wrk, {bottom}{cache} to CPU 1"
        return "unpinned (every process may use every CPU)"

    def start_memcached(self):
        """--cache: two memcached servers, on the CPU of wrk and the backend (the server
        under test keeps CPU 0 to itself). Returns None or a failure reason."""
        binary = shutil.which("memcached")
        if binary is None:
            return "no memcached on PATH (bench/run.sh installs Debian's memcached)"
        for i in range(2):
            with socket.socket() as s:
                s.bind(("127.0.0.1", 0))
                port = s.getsockname()[1]
            user = ["-u", "root"] if os.geteuid() == 0 else []
            proc = _start([*self.load_pin, binary, *user, "-l", "127.0.0.1", "-p", str(port), "-U", "0",
                           "-t", "1", "-m", "64", "-c", "4096"], self.logs / f"memcached-{i}.log")
            self.memcached.append((proc, port))
            if not self._memcached_command(port, b"version\r\n", b"VERSION", wait_s=5):
                return f"memcached on port {port} did not start (see {self.logs / f'memcached-{i}.log'})"
        return None

    def cache_servers(self):
        return ",".join(f"127.0.0.1:{port}" for _, port in self.memcached)

    def flush_cache(self):
        """Every point starts with an empty cache. Returns None or a failure reason."""
        for proc, port in self.memcached:
            if proc.poll() is not None or not self._memcached_command(port, b"flush_all\r\n", b"OK"):
                return f"memcached-{port}-down"
        return None

    @staticmethod
    def _memcached_command(port, line, want, wait_s=0.0):
        deadline = time.monotonic() + wait_s
        while True:
            try:
                with socket.create_connection(("127.0.0.1", port), timeout=2) as sock:
                    sock.sendall(line)
                    if sock.recv(256).startswith(want):
                        return True
            except OSError:
                pass
            if time.monotonic() >= deadline:
                return False
            time.sleep(0.05)

    def ensure_backend(self):
        """Starts the backend (again, if it died). Returns None or a failure reason.
        --inventory: the database is the bottom, no backend runs."""
        if self.args.inventory:
            return None
        if self.backend is not None and self.backend.poll() is None:
            return None
        if self.backend is not None:
            stop(self.backend)
        binary = self.bin_dir / "legacy_backend"
        if not os.access(binary, os.X_OK):
            return "missing-backend-binary"
        stdout_path = self.logs / "backend.out"
        self.backend = _start([*self.load_pin, str(binary), "--port", "0",
                               "--delay-ms", str(self.args.delay_ms)],
                              self.logs / "backend.err", stdout_path)
        port, reason = wait_listening(self.backend, stdout_path, self.args.startup_timeout)
        if port is None:
            return "backend-" + reason
        self.backend_port = port
        return None


def empty_row(variant, conc, setup, status):
    row = {c: NA for c in COLUMNS}
    row.update(variant=variant, concurrency=conc, duration_s=setup.args.duration,
               placement="pinned" if setup.pinned else "unpinned", status=status)
    return row


def fmt(value, digits):
    return NA if value is None else f"{value:.{digits}f}"


def run_point(setup, variant, conc, progress):
    """Measures one point; always returns a full row."""
    args = setup.args
    row = empty_row(variant, conc, setup, "failed:unknown")
    program, _, options = variant.partition("+")
    binary = setup.bin_dir / program
    extra = DIAG_FLAGS if options == "diag" else []
    if not os.access(binary, os.X_OK):
        row["status"] = "failed:missing-binary"
        return row, None
    reason = setup.ensure_backend()
    if reason:
        row["status"] = "failed:" + reason
        return row, None

    cache = []
    if args.cache:
        reason = setup.flush_cache()
        if reason:
            row["status"] = "failed:" + reason
            return row, None
        cache = ["--cache", setup.cache_servers()]

    tag = f"{variant}-c{conc}"
    stdout_path, err_path = setup.logs / f"{tag}.out", setup.logs / f"{tag}.err"
    bottom = (["--inventory", args.inventory] if args.inventory
              else ["--backend", f"127.0.0.1:{setup.backend_port}"])
    server = _start([*setup.server_pin, str(binary), "--port", "0", *bottom, *cache, *extra], err_path, stdout_path)
    try:
        port, reason = wait_listening(server, stdout_path, args.startup_timeout)
        if port is None:
            row["status"] = "failed:" + reason
            return row, stderr_note(err_path)

        threads = max(1, min(args.wrk_threads, conc))
        wrk_cmd = [*setup.load_pin, "wrk", "-t", str(threads), "-c", str(conc), "-d", f"{args.duration}s",
                   "--timeout", f"{args.wrk_timeout}s", "--latency", f"http://127.0.0.1:{port}{PATH}"]
        cpu_before = cpu_seconds(server.pid)
        cpu_last, rss_last, server_rc = cpu_before, peak_rss_kib(server.pid), None
        started = time.monotonic()
        wrk = subprocess.Popen(wrk_cmd, stdin=subprocess.DEVNULL, stdout=subprocess.PIPE,
                               stderr=subprocess.STDOUT, start_new_session=True)
        _live.append(wrk)
        wrk_deadline = started + args.duration + max(30, args.wrk_timeout * 2)
        wrk_hung = False
        # Sample while wrk runs: if the server dies we keep its last numbers.
        while wrk.poll() is None:
            if server_rc is None:
                server_rc = server.poll()
                if server_rc is None:
                    cpu_last = cpu_seconds(server.pid) or cpu_last
                    rss_last = peak_rss_kib(server.pid) or rss_last
            if time.monotonic() > wrk_deadline:
                wrk_hung = True
                stop(wrk, deadline_s=1)
                break
            progress(time.monotonic() - started)
            time.sleep(0.2)
        wrk_out = wrk.stdout.read().decode(errors="replace") if wrk.stdout else ""
        if wrk.stdout:
            wrk.stdout.close()
        wrk_rc = wrk.wait()
        if wrk in _live:
            _live.remove(wrk)
        (setup.logs / f"{tag}.wrk").write_text(wrk_out)
        if server_rc is None:
            server_rc = server.poll()
        if server_rc is None:
            cpu_last = cpu_seconds(server.pid) or cpu_last
            rss_last = peak_rss_kib(server.pid) or rss_last

        res = parse_wrk(wrk_out)
        for key in ("connect_errors", "read_errors", "write_errors", "timeout_errors", "non_2xx",
                    "requests"):
            row[key] = NA if res[key] is None else res[key]
        row["req_per_s"] = fmt(res["req_per_s"], 1)
        for key in ("p50_ms", "p99_ms", "max_ms"):
            # wrk reports latency 0 when nothing completed: not a measurement.
            row[key] = fmt(res[key] if res["requests"] else None, 3)
        # Connections that got answers, by Little's law (req/s x mean latency). wrk counts a
        # timeout only when a late answer arrives, so a connection the server never serves
        # (left in the accept queue, or queued behind a busy pool) shows up only here.
        served = None
        if res["req_per_s"] and res["mean_ms"] is not None and res["requests"]:
            served = res["req_per_s"] * res["mean_ms"] / 1000
        row["served_conns"] = fmt(served, 0)
        row["peak_rss_kib"] = NA if rss_last is None else rss_last
        if cpu_before is not None and cpu_last is not None and res["requests"]:
            row["cpu_s_per_1k_req"] = f"{(cpu_last - cpu_before) / (res['requests'] / 1000):.4f}"

        failures = []
        if server_rc is not None:
            failures.append(f"server-died({describe_rc(server_rc)})")
        if wrk_hung:
            failures.append("wrk-hung")
        elif wrk_rc != 0:
            failures.append(f"wrk-exit-{wrk_rc}")
        if res["requests"] is None or res["req_per_s"] is None:
            failures.append("wrk-output-unreadable")
        elif res["requests"] == 0:
            failures.append("no-responses")
        for key, name in (("timeout_errors", "timeouts"), ("connect_errors", "connect-errors"),
                          ("read_errors", "read-errors"), ("write_errors", "write-errors"),
                          ("non_2xx", "non-2xx")):
            if res[key]:
                failures.append(name)
        if served is not None and served < 0.5 * conc:
            failures.append(f"starved({served:.0f}-of-{conc}-served)")
        row["status"] = "failed:" + "+".join(failures) if failures else "ok"
        note = stderr_note(err_path) if failures else None
        return row, note
    finally:
        if not stop(server, args.stop_deadline):
            log(f"\n   note: {variant} c={conc} did not exit within {args.stop_deadline:g} s of SIGTERM: killed")
        # Context switches of every thread the server ever had (wait4), startup and stop
        # included: the per-request cost of waking a blocked thread versus a fiber.
        usage = getattr(server, "rusage", None)
        requests = num(row, "requests")
        if usage is not None and requests:
            row["ctx_switches_per_req"] = f"{(usage.ru_nvcsw + usage.ru_nivcsw) / requests:.2f}"
        # A fresh backend per point too: nothing left over from the previous server's connections.
        stop(setup.backend, args.stop_deadline)
        setup.backend = None


def stderr_note(err_path):
    try:
        lines = [line.strip() for line in Path(err_path).read_text(errors="replace").splitlines()
                 if line.strip()]
    except OSError:
        return None
    if not lines:
        return None
    more = f" (+{len(lines) - 1} more lines)" if len(lines) > 1 else ""
    return f"server stderr: {lines[0][:120]}{more} [{err_path}]"


# ---- output -------------------------------------------------------------------------

def write_csv(path, rows):
    tmp = path.with_suffix(".csv.tmp")
    with open(tmp, "w", newline="") as f:
        writer = csv.DictWriter(f, fieldnames=COLUMNS)
        writer.writeheader()
        writer.writerows(rows)
    tmp.replace(path)


def num(row, key):
    try:
        value = float(row[key])
    except (KeyError, TypeError, ValueError):
        return None
    return None if math.isnan(value) else value


def cell(value, digits=1):
    return "-" if value is None else f"{value:,.{digits}f}"


def print_table(rows):
    head = ["variant", "conns", "req/s", "p50 ms", "p99 ms", "max ms", "err c/r/w/t", "non-2xx", "served",
            "peak RSS MiB", "CPU s/1k req", "ctx sw/req", "status"]
    lines = []
    for row in rows:
        errs = "/".join(str(row[k]) for k in ("connect_errors", "read_errors", "write_errors",
                                                "timeout_errors"))
        rss = num(row, "peak_rss_kib")
        lines.append([row["variant"], str(row["concurrency"]), cell(num(row, "req_per_s"), 0),
                      cell(num(row, "p50_ms"), 2), cell(num(row, "p99_ms"), 2), cell(num(row, "max_ms"), 1),
                      errs, str(row["non_2xx"]), cell(num(row, "served_conns"), 0),
                      cell(None if rss is None else rss / 1024, 1),
                      cell(num(row, "cpu_s_per_1k_req"), 3), cell(num(row, "ctx_switches_per_req"), 2),
                      row["status"]])
    widths = [max(len(r[i]) for r in [head, *lines]) for i in range(len(head))]
    left = {0, len(head) - 1}

    def render(r):
        return "  ".join(v.ljust(w) if i in left else v.rjust(w) for i, (v, w) in enumerate(zip(r, widths)))
    log(render(head))
    log("  ".join("-" * w for w in widths))
    for r in lines:
        log(render(r))


def check_targets(rows, concurrencies):
    """The issue's targets, each met / MISSED (or n/a when the run did not measure it)."""
    by = {(r["variant"], int(r["concurrency"])): r for r in rows}
    fib_name, thr_name = "legacy_fibers", "legacy_threads"
    results = []

    def add(state, text):
        results.append(state)
        log(f"  [{state:^6}] {text}")

    def errors(r):
        keys = ("connect_errors", "read_errors", "write_errors", "timeout_errors", "non_2xx")
        vals = [num(r, k) for k in keys]
        return None if any(v is None for v in vals) else int(sum(vals))

    for conc in (1000, 10000):
        fib, thr = by.get((fib_name, conc)), by.get((thr_name, conc))
        if conc not in concurrencies or fib is None or thr is None:
            add("n/a", f"c={conc}: not measured in this run")
            continue
        thr_failed = thr["status"] != "ok"
        thr_note = f" (thread-per-connection: {thr['status']})" if thr_failed else ""
        f, t = num(fib, "req_per_s"), num(thr, "req_per_s")
        if f is None or not fib["requests"] or fib["requests"] == NA:
            add("MISSED", f"c={conc}: fibers req/s >= 1.5x threads: no fiber measurement ({fib['status']})")
        else:
            ok = t is None or f >= 1.5 * t
            ratio = f"{f / t:.2f}x" if t else "threads served nothing"
            add("met" if ok else "MISSED",
                f"c={conc}: fibers req/s >= 1.5x threads: {f:,.0f} vs {cell(t, 0)} ({ratio}){thr_note}")
        f, t = num(fib, "peak_rss_kib"), num(thr, "peak_rss_kib")
        if f is None or t is None:
            add("MISSED" if f is None else "n/a",
                f"c={conc}: fibers peak RSS <= 1/4 of threads: no RSS for "
                f"{'fibers' if f is None else 'threads'}")
        else:
            add("met" if f <= t / 4 else "MISSED",
                f"c={conc}: fibers peak RSS <= 1/4 of threads: {f / 1024:.1f} vs {t / 1024:.1f} MiB "
                f"({f / t:.2f}x){thr_note}")
        f, t = num(fib, "p99_ms"), num(thr, "p99_ms")
        if f is None:
            add("MISSED", f"c={conc}: fibers p99 < threads: no fiber p99 ({fib['status']})")
        else:
            ok = t is None or f < t
            add("met" if ok else "MISSED",
                f"c={conc}: fibers p99 < threads: {f:.1f} vs {cell(t, 1)} ms{thr_note}")
        e = errors(fib)
        ok = e == 0 and fib["status"] == "ok"
        add("met" if ok else "MISSED",
            f"c={conc}: fibers zero errors: {'none' if e == 0 else e if e is not None else 'unknown'}"
            f" (status {fib['status']})")

    conc = 10
    fib = by.get((fib_name, conc))
    for other_name in ("legacy_threads", "legacy_pool"):
        other = by.get((other_name, conc))
        if conc not in concurrencies or fib is None or other is None:
            add("n/a", "c=10: not measured in this run")
            continue
        f, o = num(fib, "req_per_s"), num(other, "req_per_s")
        if f is None:
            add("MISSED", f"c=10: fibers req/s within 10% of {other_name}: no fiber data ({fib['status']})")
        elif o is None or o == 0:
            add("n/a", f"c=10: fibers req/s within 10% of {other_name}: nothing to compare with "
                       f"({other['status']})")
        else:
            add("met" if f >= 0.9 * o else "MISSED",
                f"c=10: fibers req/s >= 0.9x {other_name}: {f:,.0f} vs {o:,.0f} ({f / o:.2f}x)")
        f, o = num(fib, "p99_ms"), num(other, "p99_ms")
        if f is None:
            add("MISSED", f"c=10: fibers p99 within 10% of {other_name}: no fiber data ({fib['status']})")
        elif o is None:
            add("n/a", f"c=10: fibers p99 within 10% of {other_name}: nothing to compare with "
                       f"({other['status']})")
        else:
            add("met" if f <= 1.1 * o else "MISSED",
                f"c=10: fibers p99 <= 1.1x {other_name}: {f:.2f} vs {o:.2f} ms ({f / o:.2f}x)")
    log(f"  targets: {results.count('met')} met, {results.count('MISSED')} MISSED, "
        f"{results.count('n/a')} n/a (not measured or nothing to compare with)")


def make_plots(out_dir, rows, variants, setup_text):
    """Per-variant data files and three PNGs through bench/compare/plots.gp."""
    data_dir = out_dir / "plot-data"
    data_dir.mkdir(exist_ok=True)
    metrics = {"req_per_s": lambda v: v, "p99_ms": lambda v: v, "peak_rss_kib": lambda v: v / 1024}
    present = {m: [] for m in metrics}
    for variant in variants:
        for metric, conv in metrics.items():
            # Third column: 1 where the point failed, which the plot circles (a starved
            # pool's p99 looks fine: it only counts the connections it served).
            points = [(int(r["concurrency"]), num(r, metric), int(r["status"] != "ok"))
                      for r in rows if r["variant"] == variant]
            points = [(c, conv(v), f) for c, v, f in sorted(points) if v is not None]
            (data_dir / f"{metric}-{variant}.dat").write_text("".join(f"{c} {v} {f}\n" for c, v, f in points))
            if points:
                present[metric].append(variant)
    if not shutil.which("gnuplot"):
        log("  no gnuplot on PATH: plots skipped (bench/run.sh installs gnuplot-nox)")
        return []
    script = Path(__file__).with_name("plots.gp")
    defs = (f"datadir='{data_dir}'; outdir='{out_dir}'; setup='{setup_text}'; "
            f"v_req_per_s='{' '.join(present['req_per_s'])}'; v_p99_ms='{' '.join(present['p99_ms'])}'; "
            f"v_peak_rss_kib='{' '.join(present['peak_rss_kib'])}'")
    proc = subprocess.run(["gnuplot", "-e", defs, str(script)], capture_output=True, text=True, timeout=60)
    if proc.returncode != 0:
        log(f"  gnuplot failed ({proc.returncode}): {proc.stderr.strip()[:400]}")
    pngs = [out_dir / f"{name}.png" for name in ("throughput", "p99_latency", "peak_rss")]
    return [p for p in pngs if p.exists() and p.stat().st_size > 0]


# ---- main ---------------------------------------------------------------------------

def parse_args(argv):
    ap = argparse.ArgumentParser(prog="bench/run.sh", description=__doc__.split("\n\n")[0])
    ap.add_argument("--bin-dir", required=True, type=Path, help="directory with the legacy_* binaries")
    ap.add_argument("--out", type=Path, help="output directory (default bench/results; --smoke: a temp dir)")
    ap.add_argument("--duration", type=int, help="seconds of wrk per point (default 10; --smoke: 1)")
    ap.add_argument("--concurrencies", help="comma-separated wrk -c values (default 10,100,1000,10000)")
    ap.add_argument("--variants", default=",".join(VARIANTS),
                    help="comma-separated, default all three; legacy_fibers+diag: with the watchdog and "
                         "a request deadline on")
    ap.add_argument("--delay-ms", type=int, default=10, help="backend delay per request (default 10)")
    ap.add_argument("--unpinned", action="store_true", help="no taskset: the server may use every CPU")
    ap.add_argument("--cache", action="store_true",
                    help="two memcached servers (on CPU 1 with wrk and the backend), every server with "
                         "--cache, flushed before each point; output in bench/results/cache")
    ap.add_argument("--inventory", metavar="URL",
                    help="a SQL bottom instead of the HTTP backend: every server with --inventory URL "
                         "(sqlite:PATH or mysql://user:password@host:port/db holding the inventory table), "
                         "no backend; output in bench/results/inventory (bench/run.sh --inventory mariadb "
                         "starts and loads a private MariaDB)")
    ap.add_argument("--inventory-label", help="what --inventory is, for the output (default: its scheme)")
    ap.add_argument("--smoke", action="store_true",
                    help="1 s per point at 10 and 100 connections into a temp dir, then check the CSV")
    ap.add_argument("--wrk-threads", type=int, default=1, help="wrk -t (default 1)")
    ap.add_argument("--wrk-timeout", type=int, default=2, help="wrk --timeout in seconds (default 2)")
    ap.add_argument("--startup-timeout", type=float, default=10, help="seconds to wait for 'listening on'")
    ap.add_argument("--stop-deadline", type=float, default=3, help="seconds between TERM and KILL")
    args = ap.parse_args(argv)
    if args.duration is None:
        args.duration = 1 if args.smoke else 10
    if args.concurrencies:
        args.concurrencies = [int(c) for c in args.concurrencies.split(",") if c]
    else:
        args.concurrencies = SMOKE_CONCURRENCIES if args.smoke else DEFAULT_CONCURRENCIES
    args.variants = [v for v in args.variants.split(",") if v]
    if args.duration < 1 or not args.concurrencies or min(args.concurrencies) < 1 or not args.variants:
        ap.error("--duration, --concurrencies and --variants need positive values")
    return args


def bottom_text(args):
    """What the servers ask for the inventory."""
    if args.inventory:
        return f"inventory in {args.inventory_label or args.inventory.split(':', 1)[0]}"
    return f"backend delay {args.delay_ms} ms"


def raise_fd_limit(concurrencies):
    """Soft RLIMIT_NOFILE to the hard limit; children (wrk, servers, backend) inherit it."""
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    want = hard if hard != resource.RLIM_INFINITY else 1 << 20
    if soft < want:
        resource.setrlimit(resource.RLIMIT_NOFILE, (want, hard))
    # A server holds a client socket and up to one backend socket per connection.
    need = 2 * max(concurrencies) + 64
    limit = resource.getrlimit(resource.RLIMIT_NOFILE)[0]
    if limit < need:
        log(f"== note: open-file limit is {limit} (hard limit; raising it needs root outside this "
            f"container), a server may need ~{need} at c={max(concurrencies)}")
    return limit


def main(argv):
    args = parse_args(argv)
    for sig in (signal.SIGINT, signal.SIGTERM, signal.SIGHUP):
        signal.signal(sig, _on_signal)
    repo = Path(__file__).resolve().parents[2]
    made_temp = False
    if args.out is None:
        if args.smoke:
            args.out = Path(tempfile.mkdtemp(prefix="fiberloop-bench-smoke-"))
            made_temp = True
        else:
            args.out = repo / "bench" / "results" / ("inventory" if args.inventory else "cache" if args.cache else "")
    out_dir = args.out.resolve()
    out_dir.mkdir(parents=True, exist_ok=True)
    if not shutil.which("wrk"):
        log("error: wrk is not on PATH; bench/run.sh installs it (apt-get install wrk)")
        return 2

    fd_limit = raise_fd_limit(args.concurrencies)
    setup = Setup(args, args.bin_dir.resolve(), out_dir)
    if args.cache:
        reason = setup.start_memcached()
        if reason:
            stop_all()
            log(f"error: --cache: {reason}")
            return 2
    points = [(v, c) for v in args.variants for c in args.concurrencies]
    log(f"== {len(args.variants)} variants x {len(args.concurrencies)} concurrencies "
        f"({', '.join(map(str, args.concurrencies))}), {args.duration} s each "
        f"(~{len(points) * args.duration} s of wrk), {bottom_text(args)}"
        + (f", cache-aside on memcached {setup.cache_servers()}" if args.cache else ""))
    log(f"== {setup.placement()}; wrk -t{args.wrk_threads} --timeout {args.wrk_timeout}s; "
        f"open files {fd_limit}; {os.cpu_count()} CPUs, load average {os.getloadavg()[0]:.2f} at start "
        f"(other work on the machine skews every number)")
    log(f"== binaries: {setup.bin_dir}; output: {out_dir}")

    rows, notes = [], []
    csv_path = out_dir / "compare.csv"
    tty = sys.stdout.isatty()
    started = time.monotonic()
    try:
        for i, (variant, conc) in enumerate(points, 1):
            prefix = f"[{i:2}/{len(points)}] {variant:<15} c={conc:<6}"

            def progress(elapsed, prefix=prefix):
                if tty:
                    print(f"\r{prefix} {elapsed:4.0f}/{args.duration} s", end="", flush=True)
            if not tty:
                log(f"{prefix} running ...")
            row, note = run_point(setup, variant, conc, progress)
            rows.append(row)
            write_csv(csv_path, rows)
            summary = (f"{cell(num(row, 'req_per_s'), 0)} req/s, p99 {cell(num(row, 'p99_ms'), 1)} ms, "
                       f"RSS {cell(None if num(row, 'peak_rss_kib') is None else num(row, 'peak_rss_kib') / 1024, 1)}"
                       f" MiB  {row['status']}")
            log(f"\r{prefix} {summary}" + " " * 8 if tty else f"{prefix} {summary}")
            if note:
                notes.append(f"{variant} c={conc}: {note}")
    finally:
        stop(setup.backend)
        stop_all()

    log(f"\n== results ({time.monotonic() - started:.0f} s; {setup.placement()}; "
        f"{args.duration} s per point)")
    print_table(rows)
    for note in notes:
        log(f"  {note}")
    log("\n== targets (issue 5; fibers = legacy_fibers, threads = legacy_threads)")
    check_targets(rows, args.concurrencies)
    bottom = "database" if args.inventory else "backend"
    pngs = make_plots(out_dir, rows, args.variants,
                      f"{f'server on CPU 0, wrk + {bottom} on CPU 1' if setup.pinned else 'unpinned'}, "
                      f"{args.duration} s per point, {bottom_text(args)}"
                      + (", 2 memcached (cache-aside)" if args.cache else ""))
    log(f"\n== wrote {csv_path}" + "".join(f"\n   {p}" for p in pngs))

    if args.smoke:
        # The harness's own test: every row there, every cell filled, every point ok, plots drawn.
        from check_csv import check
        problems = check(csv_path, args.variants, args.concurrencies, require_ok=True)
        if len(pngs) != 3:
            problems.append(f"expected 3 PNG plots, found {len(pngs)}")
        if problems:
            log("\nSMOKE FAILED:\n  " + "\n  ".join(problems) + f"\n  (output kept in {out_dir})")
            return 1
        log("\nsmoke: CSV complete, every point ok, 3 plots")
        if made_temp:
            shutil.rmtree(out_dir, ignore_errors=True)
    return 0


if __name__ == "__main__":
    try:
        sys.exit(main(sys.argv[1:]))
    finally:
        stop_all()
