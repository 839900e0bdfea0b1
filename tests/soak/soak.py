#!/usr/bin/env python3
"""Soak test: minutes of steady SMTP load through a private Postfix into one
relayguard daemon (milter and policy service) counting in a real Redis, with
the daemon's memory, file descriptors and threads and Redis's memory and keys
sampled every 10 s.  It passes when no SMTP session had an unexpected outcome,
the target rate was held, and nothing grew beyond its bound.

Run it through scripts/soak.sh [MINUTES] (which checks the build and sets the
RELAYGUARD_* variables); not part of ctest: it is too long for CI.

Load: --rate messages/s (default 20, or RG_SOAK_RATE) are scheduled at fixed
times (open loop: a slow server shows as a lower achieved rate, never as a
gentler load) and sent by --threads sender threads (RG_SOAK_THREADS, default
6), each an SMTP session of one message with 1-3 recipients:
  steady   a client from a pool of --clients addresses (500: 127.0.1.1 ..
           127.0.2.250); only a slice of 100 of them is active at a time and
           the slice walks round the pool once every 5 min, so every client is
           active for 1 min, then quiet for 4 min: its counters are created,
           then expire (message-rate window 2m), over and over.  Expected: 250
           everywhere.
  relay    a steady client, one recipient in a foreign domain (plus 0-2
           local): expected 554 5.7.1 for the foreign one, 250 for the rest.
  trusted  127.0.9.1-6 (ip group "relayers", trusted and exempt): relays to a
           foreign domain, expected 250 everywhere.
  abusive  127.0.66.6, 1/20 of the rate (1 message/s at 20/s): far above the
           message-rate limit, so it trips it again and again: expected 250,
           or 450 4.7.1 at MAIL FROM.
Anything else (another code, a timeout, a reset or closed connection) is an
error, counted and printed.
"""

import argparse
import bisect
import collections
import contextlib
import csv
import os
import queue
import random
import re
import shutil
import statistics
import sys
import tempfile
import threading
import time

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, os.path.join(HERE, "..", "e2e"))

from rgtest import PostfixInstance, SmtpError, free_port, send_message  # noqa: E402
from rgtest.check import check, finish  # noqa: E402
from rgtest.daemon import Relayguard  # noqa: E402
from rgtest.nodes import store_config  # noqa: E402
from rgtest.redis import RedisServer  # noqa: E402

# ---------------------------------------------------------------------------
# rules

RATE_MAX = 60          # messages per client per window
RATE_WINDOW_S = 120    # "2m": short, so that a client's key expires within the run
                       # (with the default 1h every key would live as long as the soak)
CONN_MAX = 3           # concurrent connections per client
RCPT_MAX = 5           # recipients per message
POOL_SIZE = 8          # [store.redis] pool_size (the default; bounds Redis connections)
LEASE_S = 5            # store_config's connection_lease

CONFIG = f"""
[ip_groups]
relayers = ["127.0.9.0/29"]
[relay]
local_domains = ["example.test"]
trusted_groups = ["relayers"]
[limits]
exempt_group = "relayers"
[limits.message_rate]
max = {RATE_MAX}
window = "{RATE_WINDOW_S}s"
[limits.connections]
max = {CONN_MAX}
[limits.recipients]
max = {RCPT_MAX}
"""
# Note: with the policy service asked at END-OF-MESSAGE as well as the milter
# (policy_at rcpt+eom, as this soak is specified), each accepted message is
# recorded twice, once by each front end (contrib/postfix/main.cf.snippet says
# so), so a client reaches max=60 after 30 messages.  Steady clients send ~12
# messages in their active minute; far from either.

LOCAL_USERS = [f"user{i}@example.test" for i in range(1, 21)]
ABUSIVE_IP = "127.0.66.6"
RELAYERS = [f"127.0.9.{i}" for i in range(1, 7)]
SLICE = 100            # steady clients active at a time
CYCLE_S = 300          # the active slice walks round the pool in this time

# Bounds.  RSS: after warm-up the daemon holds no per-message state (counters
# are in Redis), so what may still move is per-thread memory: a thread per open
# milter connection and one per open policy connection (Postfix keeps one per
# smtpd process, and smtpd processes come and go), each with its touched stack
# and, under malloc contention, its own glibc arena (up to 16 on 2 cores).  With
# 6 senders that is at most ~12 threads more at the end sample than at warm-up;
# at <= 256 KB each (stack pages + a fresh arena heap) about 3 MB, plus a few
# Redis pool connections (<= 8, tens of KB each).  Hence 4 MB.  A leak of
# ~390 bytes per message over the ~10 800 messages after warm-up of a 10-minute
# run at 20/s fails it (the fitted slope per message is printed too).  A flat
# 8 MB would be most of this ~10 MB daemon; 10% (~1 MB) would fail on a busier
# moment at the end sample rather than on a leak.
RSS_BOUND_KB = 4 * 1024
# fds: one per open milter connection and per open policy connection, the
# Redis pool, the listeners and the log.  The end of the run is compared with
# the highest count seen during warm-up (the count at any instant depends on
# how many sessions are in flight), plus 8: a leak of one fd per ~1 400
# messages fails.
FD_BOUND = 8
# Achieved rate within 10% of the target.
RATE_TOLERANCE = 0.10

LOG_LINE = re.compile(r"^\S+ relayguard(?:/\w+)?\[\d+\] (trace|debug|info|warning|error|critical): ")
REFUSED = re.compile(r" refused client=(\S+) rule=(\w+)")
QUEUED = re.compile(r"queued as (\w+)")


def pool_ip(i):
    return f"127.0.{1 + i // 250}.{1 + i % 250}"


# ---------------------------------------------------------------------------
# process probes

def proc_status(pid):
    """(rss_kb, threads) from /proc/PID/status, or (None, None) when it is gone."""
    rss = thr = None
    try:
        with open(f"/proc/{pid}/status") as f:
            for line in f:
                if line.startswith("VmRSS:"):
                    rss = int(line.split()[1])
                elif line.startswith("Threads:"):
                    thr = int(line.split()[1])
    except OSError:
        pass
    return rss, thr


def proc_fds(pid):
    try:
        return len(os.listdir(f"/proc/{pid}/fd"))
    except OSError:
        return None


def proc_cpu_s(pid):
    try:
        with open(f"/proc/{pid}/stat") as f:
            rest = f.read().rsplit(")", 1)[1].split()
        return (int(rest[11]) + int(rest[12])) / os.sysconf("SC_CLK_TCK")
    except (OSError, IndexError, ValueError):
        return None


# ---------------------------------------------------------------------------

class Stats:
    """Everything the senders count, under one lock."""

    def __init__(self):
        self.lock = threading.Lock()
        self.sent = 0                 # sessions completed (whatever their outcome)
        self.accepted = 0             # 250 after DATA
        self.refused = 0              # sessions that ended with no message accepted (expectedly)
        self.errors = 0
        self.by_kind = collections.Counter()
        self.outcomes = collections.Counter()   # (kind, outcome)
        self.error_kinds = collections.Counter()
        self.rate_refusals = 0        # 450 4.7.1 at MAIL FROM
        self.relay_refusals = 0       # 554 5.7.1 per foreign recipient
        self.accepted_qids = {}       # queue id -> number of accepted recipients
        self.abusive_accepts = []     # monotonic times of the abusive client's accepted messages
        self.latencies = []
        self.last_seen = {}           # client ip -> monotonic time its last session started
        self.first_done = None
        self.last_done = None


class Soak:
    def __init__(self, args):
        self.args = args
        self.stats = Stats()
        self.rng = random.Random(args.seed)
        self.pool = [pool_ip(i) for i in range(args.clients)]
        self.in_use = set()
        self.in_use_lock = threading.Lock()
        self.abusive_lock = threading.Lock()
        self.jobs = queue.Queue()
        self.print_lock = threading.Lock()
        self.errors_printed = 0
        self.stop_load = threading.Event()
        self.t0 = None

    def say(self, *a):
        with self.print_lock:
            print(*a, flush=True)

    # --- clients -----------------------------------------------------------
    def active_slice(self, now):
        n = len(self.pool)
        size = min(SLICE, n)
        offset = int((now - self.t0) * n / CYCLE_S) if self.t0 else 0
        return [self.pool[(offset + k) % n] for k in range(size)]

    def take_client(self, kind, rng):
        """A client address no other sender is using right now (so a steady
        client never holds two connections and never meets the connection
        limit); the abusive client is serialized by its own lock."""
        if kind == "abusive":
            self.abusive_lock.acquire()
            return ABUSIVE_IP
        while True:
            with self.in_use_lock:
                choices = RELAYERS if kind == "trusted" else self.active_slice(time.monotonic())
                free = [ip for ip in choices if ip not in self.in_use]
                if free:
                    ip = rng.choice(free)
                    self.in_use.add(ip)
                    return ip
            time.sleep(0.01)

    def give_back(self, kind, ip):
        if kind == "abusive":
            self.abusive_lock.release()
        else:
            with self.in_use_lock:
                self.in_use.discard(ip)

    # --- one session ---------------------------------------------------------
    def recipients(self, kind, n, rng):
        local = rng.sample(LOCAL_USERS, rng.randint(1, 3))
        if kind in ("relay", "trusted"):
            local = local[:rng.randint(0, 2)]
            foreign = f"victim{n}@foreign{rng.randint(1, 50)}.example"
            local.insert(rng.randint(0, len(local)), foreign)
        return local

    def judge(self, kind, rcpts, res):
        """(outcome, problem): problem is None when every reply was an expected one."""
        if res.closed:
            return "error", f"connection closed: {res.closed}"
        if res.greeting is None or res.greeting.code != 220:
            return "error", f"greeting {res.greeting}"
        if res.ehlo is None or res.ehlo.code != 250:
            return "error", f"EHLO {res.ehlo}"
        if res.mail is None:
            return "error", "no reply to MAIL"
        if res.mail.code == 450 and kind == "abusive" and res.mail.enhanced == "4.7.1":
            if res.quit is None or res.quit.code != 221:
                return "error", f"QUIT after 450: {res.quit}"
            return "rate_refused", None
        if res.mail.code != 250:
            return "error", f"MAIL {res.mail}"
        if [a for a, _ in res.rcpts] != rcpts:
            return "error", f"RCPT replies for {[a for a, _ in res.rcpts]}, sent {rcpts}"
        for addr, r in res.rcpts:
            foreign = not addr.endswith("@example.test")
            if foreign and kind == "relay":
                if r.code != 554 or r.enhanced != "5.7.1":
                    return "error", f"RCPT {addr}: {r} (expected 554 5.7.1 relay refused)"
            elif r.code != 250:
                return "error", f"RCPT {addr}: {r}"
        if res.accepted_rcpts:
            if res.data is None or res.data.code != 250 or not QUEUED.search(res.data.text):
                return "error", f"DATA {res.data} (intermediate {res.data_intermediate})"
        elif res.data is not None:
            return "error", f"DATA sent with no accepted recipient: {res.data}"
        if res.quit is None or res.quit.code != 221:
            return "error", f"QUIT {res.quit}"
        return ("accepted" if res.accepted_rcpts else "relay_refused"), None

    def session(self, n, kind, rng):
        rcpts = self.recipients(kind, n, rng)
        ip = self.take_client(kind, rng)
        started = time.monotonic()
        res = None
        try:
            body = "Soak test message %d.\n" % n + ("x" * 70 + "\n") * rng.randint(2, 60)
            res = send_message("127.0.0.1", self.args.port, source=ip,
                               sender=f"s{n}@sender{rng.randint(1, 200)}.example",
                               rcpts=rcpts, body=body, timeout=30.0)
            outcome, problem = self.judge(kind, rcpts, res)
        except (OSError, SmtpError) as e:       # refused, reset, timeout (SmtpTimeout is both)
            outcome, problem = "error", f"{type(e).__name__}: {e}"
        finally:
            done = time.monotonic()
            self.give_back(kind, ip)
        st = self.stats
        with st.lock:
            st.sent += 1
            st.by_kind[kind] += 1
            st.outcomes[(kind, outcome)] += 1
            st.latencies.append(done - started)
            st.last_seen[ip] = started
            st.first_done = st.first_done or done
            st.last_done = done
            if problem:
                st.errors += 1
                st.error_kinds[problem.split(":")[0][:60]] += 1
            elif outcome == "accepted":
                st.accepted += 1
                st.accepted_qids[QUEUED.search(res.data.text).group(1)] = len(res.accepted_rcpts)
                if kind == "abusive":
                    st.abusive_accepts.append(done)
            else:
                st.refused += 1
            if outcome == "rate_refused":
                st.rate_refusals += 1
            if res is not None and not problem:
                st.relay_refusals += sum(1 for _, r in res.rcpts if r.code == 554)
        if problem:
            with self.print_lock:
                self.errors_printed += 1
                if self.errors_printed <= 200:
                    print(f"ERROR t={done - self.t0:7.1f}s #{n} {kind} {ip} -> {rcpts}: {problem}", flush=True)
                    if self.errors_printed <= 20 and res is not None:
                        lines = [ln for ln in res.summary().splitlines() if not ln.startswith("S: 250-")]
                        print("      " + "\n      ".join(lines[-12:]), flush=True)
                elif self.errors_printed == 201:
                    print("(further errors are only counted)", flush=True)

    def worker(self, wid):
        rng = random.Random(f"{self.args.seed}-{wid}")
        while True:
            job = self.jobs.get()
            if job is None:
                return
            self.session(*job, rng)

    # --- schedule -------------------------------------------------------------
    def schedule(self, duration):
        """Puts message n on the queue at t0 + n/rate, until duration."""
        rate = self.args.rate
        abusive_every = 20
        n = 0
        while not self.stop_load.is_set():
            due = self.t0 + n / rate
            if due - self.t0 >= duration:
                break
            wait = due - time.monotonic()
            if wait > 0:
                if self.stop_load.wait(wait):
                    break
            if n % abusive_every == abusive_every // 2:
                kind = "abusive"
            else:
                r = self.rng.random()
                kind = "relay" if r < 0.10 else "trusted" if r < 0.15 else "steady"
            self.jobs.put((n, kind))
            n += 1
        return n


# ---------------------------------------------------------------------------

def redis_info(redis):
    try:
        info = redis.call("INFO", "memory")
        mem = int(re.search(r"^used_memory:(\d+)", info, re.M).group(1))
        keys = int(redis.call("DBSIZE"))
        return mem, keys
    except Exception:  # noqa: BLE001 -- a sample without Redis figures; the checks see None
        return None, None


def fmt_kb(kb):
    return "-" if kb is None else f"{kb / 1024:.1f} MB"


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--minutes", type=float, default=10.0)
    ap.add_argument("--rate", type=float, default=float(os.environ.get("RG_SOAK_RATE", "20")),
                    help="messages per second (env RG_SOAK_RATE; default 20)")
    ap.add_argument("--threads", type=int, default=int(os.environ.get("RG_SOAK_THREADS", "6")),
                    help="concurrent SMTP senders (env RG_SOAK_THREADS; default 6)")
    ap.add_argument("--clients", type=int, default=500, help="client address pool (default 500, at most 500)")
    ap.add_argument("--interval", type=float, default=10.0, help="seconds between samples (default 10)")
    ap.add_argument("--warmup", type=float, default=60.0,
                    help="seconds of warm-up before the baselines are taken (default 60; "
                         "at most half the run)")
    ap.add_argument("--csv", help="where to write the samples (default: <run dir>/samples.csv)")
    ap.add_argument("--seed", type=int, default=None, help="random seed (default: a new one, printed)")
    args = ap.parse_args()
    if args.seed is None:
        args.seed = random.SystemRandom().randrange(1 << 30)
    args.clients = max(SLICE, min(args.clients, 500))
    duration = args.minutes * 60.0
    warmup = min(args.warmup, duration / 2)
    run_dir = tempfile.mkdtemp(prefix="rgsoak-")
    csv_path = args.csv or os.path.join(run_dir, "samples.csv")
    print(f"soak: {args.minutes:g} min at {args.rate:g} msg/s, {args.threads} senders, "
          f"{args.clients} client addresses, seed {args.seed}; run dir {run_dir}", flush=True)

    soak = Soak(args)
    st = soak.stats
    samples = []
    with contextlib.ExitStack() as stack:
        redis = stack.enter_context(RedisServer())
        rg = Relayguard(CONFIG + store_config("single", [redis.address], fail_mode="tempfail",
                                              lease=f"{LEASE_S}s"))
        rg.start()
        stack.callback(lambda: rg.stop())
        args.port = free_port()
        pf = stack.enter_context(PostfixInstance(
            port=args.port, milter=rg.milter, policy=rg.policy, policy_at=("rcpt", "eom"),
            local_users=LOCAL_USERS,
            # unique queue ids for the whole run, so that the maillog check cannot confuse two messages
            extra_main_cf={"enable_long_queue_ids": "yes"}))
        pid = rg.proc.pid
        print(f"daemon pid {pid}, log {rg.logfile}; redis {redis.address} pid {redis.pid}; "
              f"postfix on 127.0.0.1:{args.port}, maillog {pf.path('maillog')}",
              flush=True)

        def sample(t_rel):
            rss, thr = proc_status(pid)
            mem, keys = redis_info(redis)
            now = time.monotonic()
            with st.lock:
                row = dict(t=round(t_rel, 1), sent=st.sent, accepted=st.accepted, refused=st.refused,
                           errors=st.errors,
                           # clients that started a session within window + lease + 15 s: the most
                           # that can hold a key (a message key lives one window after its last record)
                           key_bound=sum(1 for v in st.last_seen.values()
                                         if now - v <= RATE_WINDOW_S + LEASE_S + 15) + args.threads)
            prev = samples[-1] if samples else None
            dt = (t_rel - prev["t"]) if prev else 0
            row.update(rate=round((row["sent"] - prev["sent"]) / dt, 2) if prev and dt > 0 else 0.0,
                       rate_total=round(row["sent"] / t_rel, 2) if t_rel > 0 else 0.0,
                       rss_kb=rss, fds=proc_fds(pid), threads=thr, cpu_s=proc_cpu_s(pid),
                       redis_used_memory=mem, redis_keys=keys, backlog=soak.jobs.qsize())
            samples.append(row)
            with soak.print_lock:
                if len(samples) == 1:
                    print(f"{'t(s)':>6} {'sent':>6} {'acc':>6} {'ref':>5} {'err':>4} {'rate/s':>6} {'avg/s':>6} "
                          f"{'rss_kb':>7} {'fds':>4} {'thr':>4} {'cpu_s':>6} {'redis_mem':>9} {'keys':>5} "
                          f"{'kbound':>6} {'backlog':>7}", flush=True)
                print(f"{row['t']:6.0f} {row['sent']:6} {row['accepted']:6} {row['refused']:5} {row['errors']:4} "
                      f"{row['rate']:6.1f} {row['rate_total']:6.1f} {rss if rss is not None else '-':>7} "
                      f"{row['fds'] if row['fds'] is not None else '-':>4} {thr if thr is not None else '-':>4} "
                      f"{row['cpu_s'] if row['cpu_s'] is not None else 0:6.1f} "
                      f"{mem if mem is not None else '-':>9} {keys if keys is not None else '-':>5} "
                      f"{row['key_bound']:>6} {row['backlog']:>7}", flush=True)
            return row

        # --- load -------------------------------------------------------------
        soak.t0 = time.monotonic()
        sample(0.0)
        workers = [threading.Thread(target=soak.worker, args=(i,), daemon=True) for i in range(args.threads)]
        for w in workers:
            w.start()
        scheduled = {}
        sched = threading.Thread(target=lambda: scheduled.update(n=soak.schedule(duration)), daemon=True)
        sched.start()
        k = 1
        daemon_died = False
        while True:
            t_rel = min(k * args.interval, duration)
            delay = soak.t0 + t_rel - time.monotonic()
            if delay > 0:
                time.sleep(delay)
            row = sample(t_rel)
            if row["rss_kb"] is None:
                print(f"daemon pid {pid} is gone at t={t_rel:.0f}s: stopping the load", flush=True)
                daemon_died = True
                soak.stop_load.set()
                break
            if t_rel >= duration:
                break
            k += 1
        end_row = samples[-1]
        sched.join()
        for _ in workers:
            soak.jobs.put(None)
        drain_deadline = time.monotonic() + 120
        for w in workers:
            w.join(max(0.1, drain_deadline - time.monotonic()))
        stuck = sum(w.is_alive() for w in workers)
        with st.lock:
            elapsed = max(duration, (st.last_done or soak.t0) - soak.t0)
            sent = st.sent
        achieved = sent / elapsed if elapsed > 0 else 0.0
        print(f"load ended: {scheduled.get('n', 0)} sessions scheduled, {sent} completed in {elapsed:.1f}s "
              f"({achieved:.2f}/s){'; ' + str(stuck) + ' senders still stuck' if stuck else ''}", flush=True)

        # --- Postfix: every accepted message delivered (discarded) --------------
        with st.lock:
            qids = dict(st.accepted_qids)
        delivered = collections.defaultdict(int)
        sent_rx = re.compile(r"postfix/discard\[\d+\]: (\w+): to=<[^>]*>,.* status=sent \(")
        deadline = time.monotonic() + 90
        while True:
            log = pf.maillog()
            delivered.clear()
            for m in sent_rx.finditer(log):
                delivered[m.group(1)] += 1
            missing = [q for q, n in qids.items() if delivered.get(q, 0) < n]
            if not missing or time.monotonic() > deadline:
                break
            time.sleep(1)
        not_sent = len(re.findall(r" status=(?:deferred|bounced|expired) ", log))
        pf_warnings = [ln for ln in log.splitlines() if " warning: " in ln or " fatal: " in ln or " panic: " in ln]
        pf_milter_policy = [ln for ln in pf_warnings if re.search(r"milter|policy|127\.0\.0\.1:%d|127\.0\.0\.1:%d"
                                                                   % (rg.milter_port, rg.policy_port), ln)]
        shutil.copy(pf.path("maillog"), os.path.join(run_dir, "maillog"))

        # --- idle: Postfix stopped, every milter and policy connection closed ----
        pf.stop()
        time.sleep(3)
        idle_fds = proc_fds(pid)
        idle_rss, idle_thr = proc_status(pid)

        # --- Redis keys: only clients seen within the window still have one -------
        now = time.monotonic()
        stale = []
        our_keys = []
        try:
            our_keys = redis.keys("*")
        except Exception as e:  # noqa: BLE001 -- reported, and the checks below fail
            print(f"redis KEYS failed: {e}", flush=True)
        key_rx = re.compile(r"^rgtest:\{([^}]+)\}:(\w+)$")
        odd_keys = []
        for key in our_keys:
            m = key_rx.match(key)
            if not m:
                odd_keys.append(key)
                continue
            last = st.last_seen.get(m.group(1))
            if last is None or now - last > RATE_WINDOW_S + LEASE_S + 15:
                stale.append((key, None if last is None else round(now - last)))
        clients_counted = len(st.last_seen)

        # --- daemon -----------------------------------------------------------
        alive = rg.alive() and not daemon_died
        rc = rg.stop()
        shutil.copy(rg.logfile, os.path.join(run_dir, "relayguard.log"))
        levels = collections.Counter()
        bad_lines, warn_lines, unformatted = [], [], []
        refused_by_rule = collections.Counter()
        with open(rg.logfile, errors="replace") as f:
            for line in f:
                m = LOG_LINE.match(line)
                if not m:
                    if line.strip():
                        unformatted.append(line.rstrip())
                    continue
                levels[m.group(1)] += 1
                if m.group(1) in ("error", "critical"):
                    bad_lines.append(line.rstrip())
                elif m.group(1) == "warning":
                    warn_lines.append(line.rstrip())
                r = REFUSED.search(line)
                if r:
                    refused_by_rule[r.group(2)] += 1
        # the config dump at start is printed as TOML, not as log lines
        unformatted = [ln for ln in unformatted if not re.match(r"^\s*(\[|[\w.]+ = |\]|'|$)", ln)]

    # --- samples to CSV ------------------------------------------------------------
    with open(csv_path, "w", newline="") as f:
        w = csv.DictWriter(f, fieldnames=list(samples[0].keys()))
        w.writeheader()
        w.writerows(samples)

    # --- checks --------------------------------------------------------------
    under_load = [s for s in samples if s["t"] > 0]
    warm_rows = [s for s in under_load if s["t"] <= warmup]
    warm_row = warm_rows[-1] if warm_rows else samples[0]
    after = [s for s in under_load if s["t"] >= warm_row["t"]]
    fd_warm = max((s["fds"] for s in warm_rows if s["fds"] is not None), default=None)
    rss_max = max((s["rss_kb"] for s in under_load if s["rss_kb"] is not None), default=None)
    fd_max = max((s["fds"] for s in under_load if s["fds"] is not None), default=None)
    thr_max = max((s["threads"] for s in under_load if s["threads"] is not None), default=None)
    keys_max = max((s["redis_keys"] for s in samples if s["redis_keys"] is not None), default=None)
    mem_max = max((s["redis_used_memory"] for s in samples if s["redis_used_memory"] is not None), default=None)
    key_excess = [(s["t"], s["redis_keys"], s["key_bound"]) for s in samples
                  if s["redis_keys"] is not None and s["redis_keys"] > s["key_bound"]]
    # least-squares slope of RSS over messages sent, after warm-up: a leak shows as a steady slope
    slope = None
    pts = [(s["sent"], s["rss_kb"]) for s in after if s["rss_kb"] is not None]
    if len(pts) >= 3 and pts[-1][0] > pts[0][0]:
        mx = statistics.fmean(p[0] for p in pts)
        my = statistics.fmean(p[1] for p in pts)
        den = sum((p[0] - mx) ** 2 for p in pts)
        slope = sum((p[0] - mx) * (p[1] - my) for p in pts) / den * 1024 if den else None  # bytes/message
    # the abusive client: never more accepted within one window than the limit
    acc = sorted(st.abusive_accepts)
    abusive_max_window = 0
    for i, t in enumerate(acc):
        j = bisect.bisect_right(acc, t + RATE_WINDOW_S - 1.0)
        abusive_max_window = max(abusive_max_window, j - i)
    lat = sorted(st.latencies)

    def pct(p):
        return lat[min(len(lat) - 1, int(p * len(lat)))] if lat else 0.0

    print()
    print("=== checks")
    check("every SMTP session had an expected outcome (errors == 0)", st.errors == 0,
          f"{st.errors} errors: {dict(st.error_kinds.most_common(10))}")
    check(f"achieved rate within {RATE_TOLERANCE:.0%} of {args.rate:g}/s",
          abs(achieved - args.rate) <= RATE_TOLERANCE * args.rate, f"{achieved:.2f}/s")
    check("the daemon stayed alive to the end", alive)
    check("the daemon exited cleanly on SIGTERM (status 0)", rc == 0, f"status {rc}")
    check(f"fds at the end <= the most during warm-up + {FD_BOUND}",
          None not in (fd_warm, end_row["fds"]) and end_row["fds"] <= fd_warm + FD_BOUND,
          f"end {end_row['fds']}, warm-up max {fd_warm}")
    check(f"with Postfix stopped, fds back to the start's + at most the Redis pool ({POOL_SIZE})",
          None not in (idle_fds, samples[0]["fds"]) and idle_fds <= samples[0]["fds"] + POOL_SIZE,
          f"idle {idle_fds}, start {samples[0]['fds']}")
    check("with Postfix stopped, the daemon's threads back to the start's count",
          None not in (idle_thr, samples[0]["threads"]) and idle_thr <= samples[0]["threads"],
          f"idle {idle_thr}, start {samples[0]['threads']}")
    rss_growth = (end_row["rss_kb"] - warm_row["rss_kb"]) if None not in (end_row["rss_kb"], warm_row["rss_kb"]) else None
    check(f"RSS growth from warm-up (t={warm_row['t']:.0f}s) to the end <= {RSS_BOUND_KB // 1024} MB",
          rss_growth is not None and rss_growth <= RSS_BOUND_KB,
          f"{warm_row['rss_kb']} kB -> {end_row['rss_kb']} kB ({rss_growth} kB)")
    check("Redis keys within the bound at every sample (clients seen within window + lease + 15 s, "
          "+ one connection key per sender)", not key_excess, key_excess[:10])
    check("Redis: no key left for a client quiet for longer than the window (keys expire)",
          not stale and not odd_keys, f"stale {stale[:10]}, unexpected {odd_keys[:10]}")
    check("the daemon's log has no error or critical line", not bad_lines, "\n".join(bad_lines[:20]))
    check("every message accepted at end of data was delivered (discarded) by Postfix",
          not missing and not_sent == 0,
          f"{len(missing)} of {len(qids)} not delivered (e.g. {missing[:5]}), {not_sent} deferred/bounced")
    check("Postfix logged no milter or policy service problem", not pf_milter_policy,
          "\n".join(pf_milter_policy[:10]))
    if args.minutes >= 1:
        check("the abusive client tripped the message-rate limit", st.rate_refusals > 0
              and refused_by_rule["message_rate"] > 0,
              f"{st.rate_refusals} 450s, {refused_by_rule['message_rate']} logged")
    check(f"the abusive client never got more than {RATE_MAX} messages accepted in one window",
          abusive_max_window <= RATE_MAX, abusive_max_window)

    # --- summary ---------------------------------------------------------------
    oc = st.outcomes
    rows = [
        ("duration", f"{elapsed / 60:.1f} min ({elapsed:.0f} s), warm-up {warm_row['t']:.0f} s"),
        ("rate target / achieved", f"{args.rate:g} / {achieved:.2f} msg/s ({args.threads} senders)"),
        ("sessions (messages)", f"{st.sent}: steady {st.by_kind['steady']}, relay attempts {st.by_kind['relay']}, "
                                f"trusted relay {st.by_kind['trusted']}, abusive {st.by_kind['abusive']}"),
        ("accepted (250 after DATA)", f"{st.accepted}; delivered per maillog: "
                                      f"{sum(1 for q in qids if delivered.get(q, 0) >= qids[q])}"),
        ("refused, SMTP side", f"{st.rate_refusals} sessions 450 4.7.1 at MAIL (abusive), "
                               f"{st.relay_refusals} recipients 554 5.7.1 (relay), "
                               f"{oc[('relay', 'relay_refused')]} relay sessions with nothing accepted"),
        ("refused by rule, daemon log", ", ".join(f"{k} {v}" for k, v in sorted(refused_by_rule.items())) or "none"),
        ("abusive client", f"{len(acc)} accepted, {st.rate_refusals} refused; "
                           f"at most {abusive_max_window} accepted per {RATE_WINDOW_S}s window (max {RATE_MAX})"),
        ("errors", f"{st.errors}" + (f" ({dict(st.error_kinds.most_common(5))})" if st.errors else "")),
        ("session latency p50 / p99 / max", f"{pct(0.5) * 1000:.0f} / {pct(0.99) * 1000:.0f} / "
                                            f"{(lat[-1] if lat else 0) * 1000:.0f} ms"),
        ("daemon RSS warm-up / end / max", f"{fmt_kb(warm_row['rss_kb'])} / {fmt_kb(end_row['rss_kb'])} / "
                                           f"{fmt_kb(rss_max)} (start {fmt_kb(samples[0]['rss_kb'])}; growth "
                                           f"{rss_growth} kB; slope after warm-up "
                                           + (f"{slope:+.0f} B/message)" if slope is not None else "-)")),
        ("daemon fds warm-up max / end / max", f"{fd_warm} / {end_row['fds']} / {fd_max} "
                                               f"(start {samples[0]['fds']}, idle after Postfix stopped {idle_fds})"),
        ("daemon threads start / end / max", f"{samples[0]['threads']} / {end_row['threads']} / {thr_max} "
                                             f"(idle after Postfix stopped {idle_thr})"),
        ("daemon CPU", f"{end_row['cpu_s']:.1f} s" if end_row["cpu_s"] is not None else "-"),
        ("redis keys max / end", f"{keys_max} / {end_row['redis_keys']} ({clients_counted} distinct clients seen; "
                                 f"{len(our_keys)} keys after the load)"),
        ("redis used_memory max", fmt_kb(mem_max / 1024) if mem_max else "-"),
        ("daemon log", f"{dict(levels)}; {len(unformatted)} lines not in the log format"),
        ("postfix maillog", f"{len(pf_warnings)} warning/fatal lines, {not_sent} deferred/bounced"),
    ]
    summary = ["| measure | value |", "|---|---|"] + [f"| {k} | {v} |" for k, v in rows]
    print()
    print("=== summary")
    print("\n".join(summary))
    if warn_lines:
        print(f"\ndaemon warnings ({len(warn_lines)}), first 10:", *warn_lines[:10], sep="\n  ")
    if unformatted:
        print(f"\ndaemon log lines not in its format ({len(unformatted)}), first 10:", *unformatted[:10], sep="\n  ")
    if pf_warnings:
        print(f"\npostfix warnings ({len(pf_warnings)}), first 10:", *pf_warnings[:10], sep="\n  ")
    with open(os.path.join(run_dir, "summary.md"), "w") as f:
        f.write("\n".join(summary) + "\n")
    print(f"\nsamples: {csv_path}; daemon log, maillog and summary.md in {run_dir}")
    finish()


if __name__ == "__main__":
    main()
