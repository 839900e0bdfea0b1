"""Private Redis servers for relayguard's end-to-end tests: single, cluster and Sentinel.

relayguard talks to Redis through hiredis 0.14, which has no cluster or Sentinel support
of its own (see section 5 of /work/shared/notes/integration-on-debian12.md), so the
project implements MOVED/ASK handling and Sentinel discovery itself.  These fixtures give
the tests real servers to exercise that code against, and the means to make it fail:

  RedisServer    one redis-server on 127.0.0.1 (optionally a unix socket, a password,
                 ACL users, or a replica of another server); kill() and restart() simulate
                 a crash and a recovery.
  RedisCluster   N masters with the slots spread by ``redis-cli --cluster create``;
                 migrate_slot() moves a slot so that a client's cached slot map goes stale
                 and it gets MOVED.
  RedisSentinel  a master, its replicas and redis-sentinel processes watching them;
                 kill_master() + wait_failover() make Sentinel promote a replica.

Each is a context manager like the fixtures in rgtest.fixtures: own temp dir, start
waits until the servers answer, stop terminates them and waits until every process
(including fork children such as a replication RDB writer) is gone.  A start that fails
raises FixtureError with the tail of the log.  RGTEST_KEEP=1 keeps the directories.

cli() runs the real redis-cli (what a test wants to show); the fixtures' own bookkeeping
uses call(), a minimal RESP2 client, so that replies such as CLUSTER SLOTS or key names
are parsed exactly instead of scraped from redis-cli's text output.
"""

import os
import signal
import socket
import subprocess
import time

from .fixtures import (LOOPBACK, FixtureError, _Fixture, _kill, _reap, _run, _session_pids,
                       _tail, _wait_gone, free_port, wait_port)

__all__ = ["RedisServer", "RedisCluster", "RedisSentinel", "RedisReplyError", "resp_call"]

REDIS_SERVER = "redis-server"
REDIS_SENTINEL = "redis-sentinel"
REDIS_CLI = "redis-cli"


# --------------------------------------------------------------------------
# a minimal RESP2 client

class RedisReplyError(Exception):
    """An error reply (-ERR ..., -MOVED ..., -NOAUTH ...) from a server."""


def _encode(args):
    out = [b"*%d\r\n" % len(args)]
    for a in args:
        if not isinstance(a, bytes):
            # surrogateescape: key names read back from the server (which may hold any
            # bytes) go out again unchanged
            a = str(a).encode("utf-8", "surrogateescape")
        out.append(b"$%d\r\n%s\r\n" % (len(a), a))
    return b"".join(out)


def _read_reply(f):
    line = f.readline()
    if not line.endswith(b"\r\n"):
        raise ConnectionError("connection closed by the server")
    kind, rest = line[:1], line[1:-2]
    if kind == b"+":
        return rest.decode("utf-8", "surrogateescape")
    if kind == b"-":
        return RedisReplyError(rest.decode("utf-8", "replace"))
    if kind == b":":
        return int(rest)
    if kind == b"$":
        n = int(rest)
        if n < 0:
            return None
        data = f.read(n + 2)
        if len(data) != n + 2:
            raise ConnectionError("connection closed by the server")
        return data[:-2].decode("utf-8", "surrogateescape")
    if kind == b"*":
        n = int(rest)
        # errors nested in arrays (MULTI/EXEC) stay RedisReplyError values
        return None if n < 0 else [_read_reply(f) for _ in range(n)]
    raise ConnectionError(f"unexpected RESP reply {line!r}")


def resp_call(addr, *args, auth=None, timeout=5.0):
    """Send one command and return the decoded reply; error replies raise RedisReplyError.

    addr: (host, port) or a unix socket path.  auth: None, a password, or (user, password).
    Bulk strings come back as str (undecodable bytes kept via surrogateescape).
    """
    family = socket.AF_UNIX if isinstance(addr, str) else socket.AF_INET
    with socket.socket(family, socket.SOCK_STREAM) as s:
        s.settimeout(timeout)
        s.connect(addr)
        with s.makefile("rb") as f:
            if auth:
                s.sendall(_encode(["AUTH", *auth] if isinstance(auth, tuple) else ["AUTH", auth]))
                r = _read_reply(f)
                if isinstance(r, RedisReplyError):
                    raise r
            s.sendall(_encode(args))
            r = _read_reply(f)
    if isinstance(r, RedisReplyError):
        raise r
    return r


def _parse_info(text):
    """INFO text -> {field: value}; values stay strings ("slave0" -> "ip=...,state=online,...")."""
    out = {}
    for line in text.splitlines():
        if line and not line.startswith("#") and ":" in line:
            k, v = line.split(":", 1)
            out[k] = v.strip()
    return out


def _kv(value):
    """'ip=127.0.0.1,port=6380,state=online' -> dict."""
    return dict(p.split("=", 1) for p in value.split(",") if "=" in p)


def _pairs(flat):
    """[k1, v1, k2, v2, ...] (Sentinel's replies) -> dict."""
    return dict(zip(flat[0::2], flat[1::2]))


def _quote(s):
    # redis.conf is split with sdssplitargs: a double-quoted token may hold spaces,
    # and \\ and \" are its escapes
    return '"' + str(s).replace("\\", "\\\\").replace('"', '\\"') + '"'


def _free_ports(n):
    """n distinct free ports (free_port() called n times may hand out one port twice)."""
    ports = set()
    while len(ports) < n:
        ports.add(free_port())
    return sorted(ports)


def _poll(what, fn, timeout, interval=0.1):
    """Call fn until it returns a true value; return that value, or raise TimeoutError
    naming `what` and the last exception fn raised."""
    deadline = time.monotonic() + timeout
    last = None
    while True:
        try:
            v = fn()
            if v:
                return v
        except (OSError, RedisReplyError, FixtureError) as e:
            last = e
        if time.monotonic() >= deadline:
            raise TimeoutError(f"{what} after {timeout:.0f}s"
                               + (f" (last error: {last})" if last else ""))
        time.sleep(interval)


class _Proc:
    """One foreground server process in its own session.

    Tracks every session it ever started: a killed redis-server may leave a fork child
    (an RDB writer for a replica's full sync) behind, and stop() must get that one too.
    """

    def __init__(self):
        self.popen = None
        self.sids = []

    def launch(self, argv, stdout_path, cwd):
        with open(stdout_path, "ab") as out:
            self.popen = subprocess.Popen(argv, stdout=out, stderr=subprocess.STDOUT,
                                          stdin=subprocess.DEVNULL, cwd=cwd,
                                          start_new_session=True)
        self.sids.append(self.popen.pid)
        return self.popen

    @property
    def pid(self):
        return self.popen.pid if self.popen is not None and self.popen.poll() is None else None

    def kill(self, sig=signal.SIGKILL):
        if self.popen is not None and self.popen.poll() is None:
            self.popen.send_signal(sig)
            if sig in (signal.SIGKILL, signal.SIGTERM):
                try:
                    self.popen.wait(10)
                except subprocess.TimeoutExpired:
                    self.popen.kill()
                    self.popen.wait(5)

    def stop(self):
        self.kill(signal.SIGTERM)
        for sid in self.sids:
            left = _session_pids(sid)
            if left:
                _kill(left)
                _wait_gone(left, 5)
            _reap(_session_pids(sid, zombies=True))
        self.sids = []


# --------------------------------------------------------------------------

class RedisServer(_Fixture):
    """One redis-server on 127.0.0.1:port, no persistence, everything in its temp dir.

    port:       None -> a free port.
    unixsocket: also listen on <dir>/redis.sock (mode 770): .socket_path.
    password:   requirepass (the default user's password).
    acl_users:  {name: password}: ACL users with all rights.
    replica_of: (host, port) -> replicaof, with password as masterauth.
    extra:      more redis.conf lines, e.g. ("maxmemory 10mb",).
    Settings, passwords included, go into <dir>/redis.conf rather than argv, so that they
    do not show in ps; the file stays writable for CONFIG REWRITE (Sentinel uses it).
    """

    name = "redis"

    def __init__(self, port=None, unixsocket=False, password=None, acl_users=None,
                 replica_of=None, extra=(), start_timeout=10.0):
        super().__init__()
        self.port = port if port is not None else free_port()
        self.unixsocket = unixsocket
        self.password = password
        self.acl_users = dict(acl_users or {})
        self.replica_of = tuple(replica_of) if replica_of else None
        self.extra = list(extra)
        self.start_timeout = start_timeout
        self._proc = _Proc()

    @property
    def address(self):
        return f"{LOOPBACK}:{self.port}"

    @property
    def socket_path(self):
        return self.path("redis.sock") if self.unixsocket else None

    @property
    def pid(self):
        """The running server's pid, None when it is not running."""
        return self._proc.pid

    @property
    def conf(self):
        return self.path("redis.conf")

    def _logfile(self):
        return self.path("redis.log")

    def conf_lines(self):
        c = [f"port {self.port}", f"bind {LOOPBACK}", "protected-mode no",
             f"dir {_quote(self.dir)}", f"logfile {_quote(self._logfile())}",
             "daemonize no", "save \"\"", "appendonly no",
             # the default 5 s wait for more replicas before a diskless full sync would
             # make every replica start 5 s slower
             "repl-diskless-sync-delay 0",
             # SIGTERM makes a master wait up to 10 s for lagging replicas; tests stop fast
             "shutdown-timeout 1"]
        if self.unixsocket:
            c += [f"unixsocket {_quote(self.socket_path)}", "unixsocketperm 770"]
        if self.password is not None:
            c.append(f"requirepass {_quote(self.password)}")
            # masterauth on a master too: after a Sentinel failover it may become a replica
            c.append(f"masterauth {_quote(self.password)}")
        for user, pw in self.acl_users.items():
            c.append(f"user {user} on {_quote('>' + pw)} ~* &* +@all")
        if self.replica_of:
            c.append(f"replicaof {self.replica_of[0]} {self.replica_of[1]}")
        return c + self.extra

    def _start(self):
        with open(self.conf, "w") as f:
            f.write("\n".join(self.conf_lines()) + "\n")
        os.chmod(self.conf, 0o600)
        self._launch()

    def _launch(self):
        self._check_port_free(self.port)
        proc = self._proc.launch([REDIS_SERVER, self.conf], self.path("stdout"), self.dir)
        try:
            wait_port(LOOPBACK, self.port, self.start_timeout, proc=proc, what=self.name)
            # listening is not yet serving: a server loading data answers -LOADING
            _poll(f"{self.address} answering PING", lambda: self.call("PING") == "PONG", 5)
            if self.unixsocket:
                _poll(f"{self.socket_path} present", lambda: os.path.exists(self.socket_path), 5)
        except TimeoutError as e:
            self._fail(f"{e}\n--- stdout ---\n{_tail(self.path('stdout'))}")

    def _stop(self):
        self._proc.stop()

    def kill(self, sig=signal.SIGKILL):
        """Signal the server process (default SIGKILL: a crash) and, for SIGKILL/SIGTERM,
        wait until it has exited.  The dir stays; restart() brings it back."""
        self._proc.kill(sig)

    def restart(self):
        """Start the server again on the same port and dir (after kill(); a running one is
        terminated first).  The config is the file on disk, as CONFIG REWRITE left it."""
        if not self._started:
            raise FixtureError(f"{self.name}: restart() of a server that was never started")
        self._proc.kill(signal.SIGTERM)
        self._launch()
        return self

    def _auth(self, auth):
        if auth is None:
            return self.password
        return auth or None  # False: no AUTH

    def call(self, *args, auth=None, unix=False, timeout=5.0):
        """One command over RESP, reply decoded (see resp_call).  auth: None = the server's
        password, False = none, "pw" or ("user", "pw")."""
        addr = self.socket_path if unix else (LOOPBACK, self.port)
        return resp_call(addr, *args, auth=self._auth(auth), timeout=timeout)

    def cli_argv(self, *args, auth=None, unix=False, cluster=False):
        """argv and env for redis-cli against this server (the password travels in
        REDISCLI_AUTH, not argv)."""
        argv = [REDIS_CLI, "--no-auth-warning"]
        argv += ["-s", self.socket_path] if unix else ["-h", LOOPBACK, "-p", str(self.port)]
        if cluster:
            argv.append("-c")
        env = dict(os.environ)
        env.pop("REDISCLI_AUTH", None)
        a = self._auth(auth)
        if isinstance(a, tuple):
            argv += ["--user", a[0]]
            env["REDISCLI_AUTH"] = a[1]
        elif a:
            env["REDISCLI_AUTH"] = a
        return argv + [str(x) for x in args], env

    def cli(self, *args, auth=None, unix=False, timeout=10):
        """Run redis-cli with args; its output (stdout and stderr) stripped.  redis-cli
        exits 0 even on error replies: errors show as text, e.g. "MOVED 866 127.0.0.1:7001"
        or "AUTH failed: WRONGPASS ...".  auth/unix as in call()."""
        argv, env = self.cli_argv(*args, auth=auth, unix=unix)
        return _run(argv, timeout=timeout, check=False, env=env).stdout.strip()

    def keys(self, pattern="*"):
        """Sorted key names matching pattern (redis-cli --scan: no KEYS on a big db)."""
        out = self.cli("--scan", "--pattern", pattern)
        return sorted(k for k in out.splitlines() if k)

    def role(self):
        return self.call("ROLE")[0]

    def wait_role(self, role, timeout=10.0):
        """Poll ROLE until its first word is role ("master" or "slave")."""
        _poll(f"{self.address} role {role}", lambda: self.role() == role, timeout)
        return self

    def info(self, section=None):
        """INFO [section] as {field: value} (all strings)."""
        return _parse_info(self.call(*(["INFO", section] if section else ["INFO"])))

    def replicas_online(self):
        """Ports of the replicas this master reports with state=online."""
        info = self.info("replication")
        return sorted(int(_kv(v)["port"]) for k, v in info.items()
                      if k.startswith("slave") and k[5:].isdigit()
                      and _kv(v).get("state") == "online")


# --------------------------------------------------------------------------

class RedisCluster(_Fixture):
    """`masters` cluster nodes (no replicas), slots spread by redis-cli --cluster create.

    .nodes: the RedisServer of each node; .seeds: ["127.0.0.1:PORT", ...].
    Each node's cluster bus gets its own free port (cluster-port): the default port+10000
    does not exist for ports above 55535, where free_port() often lands.
    """

    name = "redis-cluster"

    def __init__(self, masters=3, node_timeout_ms=5000, start_timeout=30.0):
        super().__init__()
        if masters < 3:
            raise ValueError("redis-cli --cluster create needs at least 3 masters")
        self.masters = masters
        self.node_timeout_ms = node_timeout_ms
        self.start_timeout = start_timeout
        self.nodes = []

    @property
    def ports(self):
        return [n.port for n in self.nodes]

    @property
    def seeds(self):
        return [n.address for n in self.nodes]

    def _logfile(self):
        return self.path("cluster-create.log")

    def node(self, port):
        for n in self.nodes:
            if n.port == int(port):
                return n
        raise KeyError(f"no cluster node on port {port}")

    def _start(self):
        ports = _free_ports(2 * self.masters)
        for data_port, bus_port in zip(ports[:self.masters], ports[self.masters:]):
            node = RedisServer(port=data_port, extra=[
                "cluster-enabled yes", "cluster-config-file nodes.conf",
                f"cluster-node-timeout {self.node_timeout_ms}", f"cluster-port {bus_port}"])
            node.name = f"redis-cluster-node-{data_port}"
            self.nodes.append(node)  # before start: a failed start is still stopped
            node.start()
        p = _run([REDIS_CLI, "--cluster", "create", *self.seeds, "--cluster-replicas", "0",
                  "--cluster-yes"], timeout=self.start_timeout, check=False)
        with open(self._logfile(), "w") as f:
            f.write(p.stdout)
        if p.returncode != 0:
            self._fail(f"redis-cli --cluster create exited {p.returncode}")

        def settled():
            for n in self.nodes:
                info = _parse_info(n.call("CLUSTER", "INFO"))
                if info.get("cluster_state") != "ok" or \
                        int(info.get("cluster_known_nodes", 0)) != self.masters:
                    return False
            return True
        try:
            _poll("cluster_state:ok on every node", settled, self.start_timeout)
        except TimeoutError as e:
            self._fail(str(e))

    def _stop(self):
        for n in reversed(self.nodes):
            n.stop()
        self.nodes = []

    def cli(self, *args, timeout=10):
        """redis-cli -c (follows MOVED/ASK) against the first node; output stripped."""
        argv, env = self.nodes[0].cli_argv(*args, cluster=True)
        return _run(argv, timeout=timeout, check=False, env=env).stdout.strip()

    def keys_by_node(self, pattern="*"):
        """{port: sorted keys held by that node}."""
        return {n.port: n.keys(pattern) for n in self.nodes}

    def keys(self, pattern="*"):
        """Sorted keys matching pattern, over all nodes."""
        return sorted(k for ks in self.keys_by_node(pattern).values() for k in ks)

    def keyslot(self, key):
        return self.nodes[0].call("CLUSTER", "KEYSLOT", key)

    def slot_map(self, port=None):
        """[(first_slot, last_slot, owner_port), ...] as the node on port (default: the
        first) sees it."""
        node = self.node(port) if port else self.nodes[0]
        return sorted((r[0], r[1], int(r[2][1])) for r in node.call("CLUSTER", "SLOTS"))

    def slot_owner_port(self, slot, port=None):
        for first, last, owner in self.slot_map(port):
            if first <= slot <= last:
                return owner
        raise FixtureError(f"{self.name}: slot {slot} is not served by any node")

    def slot_owner(self, key):
        """Port of the node that serves key's slot."""
        return self.slot_owner_port(self.keyslot(key))

    def migrate_slot(self, slot, to_port, batch=100):
        """Move slot and all its keys to the master on to_port, the way redis-cli
        --cluster reshard does; afterwards the old owner answers MOVED for its keys."""
        src = self.node(self.slot_owner_port(slot))
        dst = self.node(to_port)
        if src is dst:
            return
        src_id, dst_id = src.call("CLUSTER", "MYID"), dst.call("CLUSTER", "MYID")
        # importing before migrating: a client sent on by the source's ASK must find
        # the target already accepting
        dst.call("CLUSTER", "SETSLOT", slot, "IMPORTING", src_id)
        src.call("CLUSTER", "SETSLOT", slot, "MIGRATING", dst_id)
        while True:
            keys = src.call("CLUSTER", "GETKEYSINSLOT", slot, batch)
            if not keys:
                break
            src.call("MIGRATE", LOOPBACK, dst.port, "", 0, 5000, "REPLACE", "KEYS", *keys)
        # target first, then source, then the rest (the order the Redis docs give), so
        # no node ever points the slot at a node that does not yet claim it
        for n in [dst, src] + [n for n in self.nodes if n not in (dst, src)]:
            n.call("CLUSTER", "SETSLOT", slot, "NODE", dst_id)
        _poll(f"slot {slot} owned by {dst.port} on every node",
              lambda: all(self.slot_owner_port(slot, n.port) == dst.port for n in self.nodes), 10)


# --------------------------------------------------------------------------

class RedisSentinel(_Fixture):
    """A master, `replicas` replicas of it, and `sentinels` redis-sentinel processes
    monitoring it as master_name.

    Fast failover: down-after 1 s and failover-timeout 5 s by default.  quorum: 1 with one
    sentinel, else a majority.  .sentinels: ["127.0.0.1:PORT", ...]; .servers: the master
    first, then the replicas (roles change on failover: ask .master).
    password: requirepass/masterauth on every server and auth-pass in the sentinels.
    """

    name = "redis-sentinel"

    def __init__(self, master_name="mymaster", replicas=1, sentinels=1, down_after_ms=1000,
                 failover_timeout_ms=5000, password=None, start_timeout=20.0):
        super().__init__()
        self.master_name = master_name
        self.n_replicas = replicas
        self.n_sentinels = sentinels
        self.down_after_ms = down_after_ms
        self.failover_timeout_ms = failover_timeout_ms
        self.password = password
        self.start_timeout = start_timeout
        self.quorum = 1 if sentinels == 1 else sentinels // 2 + 1
        self.servers = []
        self.sentinel_ports = []
        self._sentinel_procs = []

    @property
    def sentinels(self):
        return [f"{LOOPBACK}:{p}" for p in self.sentinel_ports]

    def _logfile(self):
        return self.path("sentinel-0.log")

    def sentinel_log(self, i):
        return self.path(f"sentinel-{i}.log")

    def _sentinel_conf(self, i, port, master_port):
        n = self.master_name
        c = [f"port {port}", f"bind {LOOPBACK}", "protected-mode no", "daemonize no",
             f"dir {_quote(self.dir)}", f"logfile {_quote(self.sentinel_log(i))}",
             f"sentinel monitor {n} {LOOPBACK} {master_port} {self.quorum}",
             f"sentinel down-after-milliseconds {n} {self.down_after_ms}",
             f"sentinel failover-timeout {n} {self.failover_timeout_ms}",
             f"sentinel parallel-syncs {n} 1"]
        if self.password is not None:
            c.append(f"sentinel auth-pass {n} {_quote(self.password)}")
        return c

    def _start(self):
        master = RedisServer(password=self.password)
        master.name = "redis-sentinel-master"
        self.servers.append(master)
        master.start()
        for i in range(self.n_replicas):
            r = RedisServer(password=self.password, replica_of=(LOOPBACK, master.port))
            r.name = f"redis-sentinel-replica{i}"
            self.servers.append(r)
            r.start()
        want = sorted(r.port for r in self.servers[1:])
        try:
            _poll("replicas in sync (state=online)", lambda: master.replicas_online() == want,
                  self.start_timeout)
        except TimeoutError as e:
            self._fail(str(e))

        self.sentinel_ports = _free_ports(self.n_sentinels)
        for i, port in enumerate(self.sentinel_ports):
            conf = self.path(f"sentinel-{i}.conf")
            with open(conf, "w") as f:
                f.write("\n".join(self._sentinel_conf(i, port, master.port)) + "\n")
            os.chmod(conf, 0o600)  # writable: Sentinel rewrites it with what it learns
            self._check_port_free(port)
            proc = _Proc()
            self._sentinel_procs.append(proc)
            p = proc.launch([REDIS_SENTINEL, conf], self.path(f"sentinel-{i}.stdout"), self.dir)
            try:
                wait_port(LOOPBACK, port, self.start_timeout, proc=p, what=f"sentinel {i}")
            except TimeoutError as e:
                raise FixtureError(f"{e}\n--- tail of {self.sentinel_log(i)} ---\n"
                                   f"{_tail(self.sentinel_log(i))}")

        def ready():
            # Besides the master's address: a failover needs the replicas known (and not
            # down) to every sentinel, and with several sentinels they must know each
            # other for the leader vote; both are learnt some time after startup.
            for port in self.sentinel_ports:
                if self._ask_master_addr(port) != (LOOPBACK, master.port):
                    return False
                m = _pairs(resp_call((LOOPBACK, port), "SENTINEL", "MASTER", self.master_name))
                if int(m.get("num-other-sentinels", -1)) != self.n_sentinels - 1:
                    return False
                reps = [_pairs(r) for r in resp_call((LOOPBACK, port), "SENTINEL", "REPLICAS",
                                                     self.master_name)]
                if sorted(int(r["port"]) for r in reps if r.get("flags") == "slave"
                          and r.get("master-link-status") == "ok") != want:
                    return False
            return True
        try:
            _poll("sentinels agree on the master and know its replicas and each other",
                  ready, self.start_timeout, interval=0.2)
        except TimeoutError as e:
            self._fail(str(e))

    def _stop(self):
        # sentinels first: a master stopping under their eyes would start a failover
        for proc in self._sentinel_procs:
            proc.stop()
        self._sentinel_procs = []
        for s in reversed(self.servers):
            s.stop()
        self.servers = []

    def _ask_master_addr(self, sentinel_port):
        r = resp_call((LOOPBACK, sentinel_port), "SENTINEL", "get-master-addr-by-name",
                      self.master_name, timeout=2.0)
        return (r[0], int(r[1])) if r else None

    def master_addr(self):
        """(host, port) of the master, according to the first sentinel that answers."""
        last = None
        for port in self.sentinel_ports:
            try:
                return self._ask_master_addr(port)
            except (OSError, RedisReplyError) as e:
                last = e
        raise FixtureError(f"{self.name}: no sentinel answered: {last}")

    def server(self, port):
        for s in self.servers:
            if s.port == int(port):
                return s
        raise KeyError(f"no server of this fixture on port {port}")

    @property
    def master(self):
        """The RedisServer that the sentinels currently name as master."""
        return self.server(self.master_addr()[1])

    @property
    def replicas(self):
        m = self.master
        return [s for s in self.servers if s is not m]

    def kill_master(self):
        """SIGKILL the current master (a crash, no clean shutdown); return its RedisServer."""
        m = self.master
        m.kill()
        return m

    def wait_failover(self, old_port, timeout=30.0):
        """Wait until every sentinel names a master other than old_port and that server
        answers ROLE master; return the new master's port."""
        def done():
            addrs = {self._ask_master_addr(p) for p in self.sentinel_ports}
            if len(addrs) != 1:
                return None
            (host, port), = addrs
            if port == int(old_port):
                return None
            return port if self.server(port).role() == "master" else None
        try:
            return _poll(f"{self.name}: failover away from {old_port}", done, timeout, 0.2)
        except TimeoutError as e:
            raise TimeoutError(f"{e}\n--- tail of {self._logfile()} ---\n"
                               f"{_tail(self._logfile())}")
