"""Test peer that plays the Telepresence daemon's Teleroute gRPC service.

See README.md in this directory for usage. Only the standard library is imported at module
level: grpc and pyroute2 are imported after the process has entered the daemon container's
network namespace (setns affects the calling thread only, and threads inherit the namespace of
the thread that creates them, so no thread may exist before the switch).
"""

import argparse
import ctypes
import errno
import ipaddress
import json
import logging
import os
import shutil
import signal
import socket
import sys
import tempfile
import threading
import time

CLONE_NEWNET = 0x40000000
IFA_F_NODAD = 0x02

BRIDGE = "br-daemon"
DUMMY = "cluster0"
DST_PREFIX = "tpd-"
FAIL_KNOB = "fail-next-veth"  # in STATE: the next veth pair creation fails (see README.md)
INFO = {"name": "teleroute-test-daemon", "version": "1.0.0"}

HERE = os.path.dirname(os.path.abspath(__file__))
DEFAULT_PROTO = os.path.normpath(os.path.join(HERE, "..", "..", "..", "teleroute", "proto", "teleroute.proto"))

log = logging.getLogger("teleroute-daemon")
empty_pb2 = None  # google.protobuf.empty_pb2, imported after setns

_libc = ctypes.CDLL(None, use_errno=True)


# ---------------------------------------------------------------------------------------------
# namespaces

def netns_path(pid):
    return "/proc/%d/ns/net" % pid


def netns_inode(pid):
    return os.stat(netns_path(pid)).st_ino


def setns_net(pid):
    """Moves the calling THREAD into the network namespace of process pid."""
    fd = os.open(netns_path(pid), os.O_RDONLY | os.O_CLOEXEC)
    try:
        if _libc.setns(fd, CLONE_NEWNET) != 0:
            err = ctypes.get_errno()
            raise OSError(err, "setns(%s): %s" % (netns_path(pid), os.strerror(err)))
    finally:
        os.close(fd)


# ---------------------------------------------------------------------------------------------
# small helpers

def write_atomic(path, data):
    tmp = "%s.tmp.%d" % (path, os.getpid())
    with open(tmp, "w") as f:
        f.write(data)
        f.flush()
        os.fsync(f.fileno())
    os.replace(tmp, path)


def split_list(value):
    return [x.strip() for x in (value or "").split(",") if x.strip()]


def addr_str(b):
    if not b:
        return ""
    return str(ipaddress.ip_address(bytes(b)))


def prefix_str(b):
    b = bytes(b)
    if len(b) not in (5, 17):
        return "<bad prefix %s>" % b.hex()
    return "%s/%d" % (ipaddress.ip_address(b[:-1]), b[-1])


def prefix_bytes(cidr):
    net = ipaddress.ip_network(cidr, strict=False)
    return net.network_address.packed + bytes([net.prefixlen])


def read_routes(path):
    with open(path) as f:
        data = json.load(f)
    v4 = [str(ipaddress.IPv4Network(c, strict=False)) for c in data.get("ipv4", [])]
    v6 = [str(ipaddress.IPv6Network(c, strict=False)) for c in data.get("ipv6", [])]
    return v4, v6


class CallLog:
    def __init__(self, path):
        self._lock = threading.Lock()
        self._f = open(path, "a", buffering=1)

    def write(self, record):
        record = dict(record)
        record.setdefault("time", time.strftime("%Y-%m-%dT%H:%M:%S") + ("%.3f" % (time.time() % 1))[1:])
        line = json.dumps(record, sort_keys=False)
        with self._lock:
            self._f.write(line + "\n")
            self._f.flush()

    def close(self):
        with self._lock:
            self._f.close()


# ---------------------------------------------------------------------------------------------
# netlink (imported lazily: after setns)

class Net:
    """Links in the daemon namespace (the caller's) and lookups in the plugin's."""

    def __init__(self):
        from pyroute2 import IPRoute  # noqa: PLC0415
        self.IPRoute = IPRoute
        self.lock = threading.RLock()
        self.ipr = IPRoute()
        self.created = set()  # daemon-side veth ends created by this run
        self.dummy_kind = "existing"

    def idx(self, name):
        found = self.ipr.link_lookup(ifname=name)
        return found[0] if found else None

    def setup(self, addrs4, addrs6):
        with self.lock:
            old = self.idx(BRIDGE)
            if old is not None:
                # Left over from a previous run in the same container: drop its veths too.
                for link in self.ipr.get_links():
                    if link.get_attr("IFLA_MASTER") == old:
                        name = link.get_attr("IFLA_IFNAME")
                        log.warning("deleting leftover %s (was on %s)", name, BRIDGE)
                        self.ipr.link("del", index=link["index"])
                self.ipr.link("del", index=old)
            self.ipr.link("add", ifname=BRIDGE, kind="bridge")
            self.ipr.link("set", index=self.idx(BRIDGE), state="up")

            if self.idx(DUMMY) is None:
                # "dummy" is the natural kind, but some kernels (this test machine's) are built
                # without CONFIG_DUMMY (EOPNOTSUPP): an ifb, or a port-less bridge, holds
                # local addresses just as well.
                for kind in ("dummy", "ifb", "bridge"):
                    try:
                        self.ipr.link("add", ifname=DUMMY, kind=kind)
                        self.dummy_kind = kind
                        break
                    except Exception as exc:  # noqa: BLE001
                        log.info("cannot create %s as %s: %s", DUMMY, kind, exc)
                else:
                    raise RuntimeError("cannot create %s (dummy, ifb, bridge)" % DUMMY)
                log.info("%s is a %s interface", DUMMY, self.dummy_kind)
            d = self.idx(DUMMY)
            self.ipr.flush_addr(index=d)
            self.ipr.link("set", index=d, state="up")
            if addrs6:
                enable_ipv6([DUMMY, BRIDGE])
            for a in addrs4 + addrs6:
                self.add_addr(DUMMY, a)

    def add_addr(self, ifname, cidr):
        iface = ipaddress.ip_interface(cidr)
        kw = {}
        if iface.version == 6:
            kw["flags"] = IFA_F_NODAD
        with self.lock:
            i = self.idx(ifname)
            if i is None:
                raise RuntimeError("no interface %s" % ifname)
            self.ipr.addr("add", index=i, address=str(iface.ip), prefixlen=iface.network.prefixlen, **kw)

    def teardown(self):
        with self.lock:
            for name in sorted(self.created):
                i = self.idx(name)
                if i is not None:
                    try:
                        self.ipr.link("del", index=i)
                        log.info("deleted %s (and its peer)", name)
                    except Exception as exc:  # noqa: BLE001
                        log.warning("deleting %s: %s", name, exc)
            for name in (BRIDGE, DUMMY):
                i = self.idx(name)
                if i is not None:
                    try:
                        self.ipr.link("del", index=i)
                        log.info("deleted %s", name)
                    except Exception as exc:  # noqa: BLE001
                        log.warning("deleting %s: %s", name, exc)
            self.ipr.close()

    def create_pair(self, pid):
        """A new veth pair as the real daemon makes one (createAddressEndpoint): both ends named
        tp-<12 random base32 chars> with random MACs, the first on br-daemon (left down until
        Join), the second moved into the namespace of pid (the plugin's). Returns (host, cont).
        Raises VethError with the real daemon's wording when a step fails."""
        host, cont = interface_name(), interface_name()
        with self.lock:
            try:
                self.ipr.link("add", ifname=host, kind="veth", address=random_mac(),
                              peer={"ifname": cont, "address": random_mac()})
            except Exception as exc:  # noqa: BLE001 - netlink errors
                raise VethError("cannot create veth pair %s/%s: %s" % (host, cont, netlink_reason(exc)))
            self.created.add(host)
            try:
                self.ipr.link("set", index=self.idx(host), master=self.idx(BRIDGE))
            except Exception as exc:  # noqa: BLE001
                raise VethError("link set %s master %s failed: %s" % (host, BRIDGE, netlink_reason(exc)))
            try:
                if not pid:
                    raise OSError(errno.ESRCH, "no such process")
                self.ipr.link("set", index=self.idx(cont), net_ns_pid=pid)
            except Exception as exc:  # noqa: BLE001
                raise VethError("link set %s netns %d failed: %s" % (cont, pid or 0, netlink_reason(exc)))
        return host, cont

    def link_up(self, name):
        """Join's `link set <host end> up`; VethError when it fails (the link is gone)."""
        with self.lock:
            i = self.idx(name)
            try:
                if i is None:
                    raise OSError(errno.ENODEV, "Link not found")
                self.ipr.link("set", index=i, state="up")
            except Exception as exc:  # noqa: BLE001
                raise VethError("link set %s up failed: %s" % (name, netlink_reason(exc)))


class VethError(Exception):
    """A failed netlink step, worded as the real daemon words it."""


def netlink_reason(exc):
    """The errno text of a netlink error, as Go's syscall.Errno prints it (lower case)."""
    code = getattr(exc, "code", None) or getattr(exc, "errno", None)
    if isinstance(code, int) and code > 0:
        return os.strerror(code).lower()
    return str(exc)


_B32 = "abcdefghijklmnopqrstuvwxyz234567"


def interface_name():
    """tp- and 12 characters of lower-case base32 over 7 random bytes (generateInterfaceName)."""
    n = int.from_bytes(os.urandom(7), "big") << 4  # 56 bits, padded to 60 = 12 characters of 5 bits
    return "tp-" + "".join(_B32[(n >> (5 * i)) & 31] for i in range(11, -1, -1))


def random_mac():
    b = bytearray(os.urandom(6))
    b[0] = (b[0] & 0xFE) | 0x02  # unicast, locally administered
    return ":".join("%02x" % x for x in b)


def enable_ipv6(ifnames):
    """Docker may disable IPv6 in a container's namespace; /proc/sys/net follows our netns."""
    for name in ["all", "default"] + list(ifnames):
        p = "/proc/sys/net/ipv6/conf/%s/disable_ipv6" % name
        try:
            with open(p) as f:
                if f.read().strip() == "0":
                    continue
            with open(p, "w") as f:
                f.write("0")
        except OSError as exc:
            log.warning("cannot enable IPv6 (%s): %s", p, exc)


# ---------------------------------------------------------------------------------------------
# HTTP "cluster service"

def start_http(port, v6):
    from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer  # noqa: PLC0415

    class Handler(BaseHTTPRequestHandler):
        server_version = "teleroute-test-daemon/1.0"

        def _answer(self, with_body):
            local = self.connection.getsockname()[0]
            body = ("hello from the cluster (%s)\n" % local).encode()
            self.send_response(200)
            self.send_header("Content-Type", "text/plain")
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            if with_body:
                self.wfile.write(body)

        def do_GET(self):  # noqa: N802
            self._answer(True)

        def do_HEAD(self):  # noqa: N802
            self._answer(False)

        def log_message(self, fmt, *args):
            log.info("http %s -> %s: %s", self.client_address[0],
                     self.connection.getsockname()[0], fmt % args)

    class Server4(ThreadingHTTPServer):
        daemon_threads = True
        allow_reuse_address = True

    class Server6(Server4):
        address_family = socket.AF_INET6

        def server_bind(self):
            self.socket.setsockopt(socket.IPPROTO_IPV6, socket.IPV6_V6ONLY, 1)
            super().server_bind()

    servers = [Server4(("0.0.0.0", port), Handler)]
    if v6:
        servers.append(Server6(("::", port), Handler))
    for s in servers:
        threading.Thread(target=s.serve_forever, name="http", daemon=True).start()
    return servers


# ---------------------------------------------------------------------------------------------
# the gRPC service

class Daemon:
    """The Teleroute service, following telepresence's pkg/client/docker/teleroute/server_linux.go:
    state is global to the daemon (not per network), veth pairs are cached by address and never
    deleted, and a Join of an endpoint whose veth pair could not be made "crashes" the peer."""

    def __init__(self, args, pb2, net, calls):
        self.args = args
        self.pb2 = pb2
        self.net = net
        self.calls = calls
        self.routes_path = os.path.join(args.state, "routes.json")
        self.knob_path = os.path.join(args.state, FAIL_KNOB)
        self.lock = threading.Lock()
        self.pid = 0             # the last Connect's pid (0: no Connect yet)
        self.gateways = []       # the last Connect's gateways (ipaddress interfaces)
        self.daemon4 = b""       # the last daemon=true CreateEndpoint's addresses
        self.daemon6 = b""
        self.endpoints = {}      # id -> {"v4", "v6", "daemon", "pair": (host, cont) or None}
        self.cache = {}          # key address bytes -> (host, cont)
        self.last_routes = ([], [])
        self.stopping = threading.Event()
        self.generation = 0      # bumped by SIGUSR1: ends current Connect streams

    def _routes(self):
        try:
            self.last_routes = read_routes(self.routes_path)
        except Exception as exc:  # noqa: BLE001
            log.warning("cannot read %s (%s): using the previous list", self.routes_path, exc)
        return self.last_routes

    def _take_knob(self):
        """The test knob: STATE/fail-next-veth makes the next veth pair creation fail (once)."""
        try:
            with open(self.knob_path) as f:
                reason = f.read().strip()
            os.unlink(self.knob_path)
        except FileNotFoundError:
            return None
        return reason or "operation not permitted"

    def _fail(self, context, rec, code, msg):
        import grpc  # noqa: PLC0415
        rec["error"] = "%s: %s" % (code, msg)
        self.calls.write(rec)
        log.warning("%s %s: %s", rec["call"], rec.get("id", ""), rec["error"])
        context.abort(getattr(grpc.StatusCode, code), msg)

    # -- rpcs

    def Connect(self, request, context):  # noqa: N802
        gws = []
        rec = {"call": "Connect", "pid": int(request.pid), "gateways": [], "peer": context.peer()}
        for g in request.gateways:
            g = bytes(g)
            if len(g) not in (5, 17) or g[-1] > (len(g) - 1) * 8:
                self._fail(context, rec, "INVALID_ARGUMENT", "unexpected slice size" if len(g) not in (5, 17)
                           else "netip.Prefix.UnmarshalBinary: prefix length %d too large" % g[-1])
            gws.append(ipaddress.ip_interface("%s/%d" % (ipaddress.ip_address(g[:-1]), g[-1])))
        rec["gateways"] = [str(g) for g in gws]
        with self.lock:
            self.pid = int(request.pid)  # global: the last Connect wins, for every network
            self.gateways = gws
            gen = self.generation
        self.calls.write(rec)
        log.info("Connect from %s: pid %d gateways %s", context.peer(), request.pid, rec["gateways"])
        yield self.pb2.Info(info=INFO)
        reason = None
        while True:
            if self.stopping.wait(0.2):
                reason = "stopping"
                break
            if not context.is_active():
                reason = "client gone"
                break
            if self.generation != gen:
                reason = "restart (SIGUSR1)"
                break
        self.calls.write({"call": "ConnectEnd", "pid": int(request.pid), "reason": reason})
        log.info("Connect stream of pid %d ends: %s", request.pid, reason)
        # the real daemon's handler returns nil when it shuts down: the stream ends with status OK

    def CreateEndpoint(self, request, context):  # noqa: N802
        v4, v6 = bytes(request.addr_ipv4), bytes(request.addr_ipv6)
        rec = {"call": "CreateEndpoint", "id": request.id, "addr_ipv4": "", "addr_ipv6": "",
               "daemon": bool(request.daemon)}
        if len(v4) not in (0, 4, 16) or len(v6) not in (0, 4, 16):
            self._fail(context, rec, "INVALID_ARGUMENT", "unexpected slice size")
        rec["addr_ipv4"], rec["addr_ipv6"] = addr_str(v4), addr_str(v6)
        with self.lock:
            if request.daemon:  # before any other check, as the real daemon does
                self.daemon4, self.daemon6 = v4, v6
            pid = self.pid
        key = v4 or v6
        if not key:
            self._fail(context, rec, "INVALID_ARGUMENT", "neither IPv4 nor IPv6 address provided")
        with self.lock:
            if request.id in self.endpoints:
                known = True
            else:
                known = False
                # reserve the id: the real daemon stores it whatever happens to the veth pair
                self.endpoints[request.id] = {"v4": v4, "v6": v6, "daemon": bool(request.daemon), "pair": None}
            pair = self.cache.get(key)
        if known:
            self._fail(context, rec, "ALREADY_EXISTS", "endpoint %s already exists" % request.id)
        how = "reused"
        error = None
        if pair is None:
            how = "created"
            reason = self._take_knob()
            try:
                if reason is not None:
                    raise VethError("cannot create veth pair %s/%s: %s" % (interface_name(), interface_name(), reason))
                pair = self.net.create_pair(pid)
            except VethError as exc:
                error = str(exc)
        rec["pid"] = pid
        if error is not None:
            # the id stays, with no links: a later Join of it dereferences nil in the real daemon
            rec["veth"] = "failed"
            self._fail(context, rec, "INTERNAL", error)
        with self.lock:
            self.cache.setdefault(key, pair)
            pair = self.cache[key]
            self.endpoints[request.id]["pair"] = pair
        rec.update({"interface": pair[1], "daemon_side": pair[0], "veth": how})
        self.calls.write(rec)
        log.info("CreateEndpoint %s %s %s daemon=%s: %s %s <-> %s (pid %d)", request.id, rec["addr_ipv4"],
                 rec["addr_ipv6"], bool(request.daemon), how, pair[0], pair[1], pid)
        return empty_pb2.Empty()

    def Join(self, request, context):  # noqa: N802
        rec = {"call": "Join", "id": request.id}
        with self.lock:
            ep = self.endpoints.get(request.id)
            daemon4, daemon6, gateways = self.daemon4, self.daemon6, list(self.gateways)
        if ep is None:
            self._fail(context, rec, "NOT_FOUND", "endpoint %s not found" % request.id)
        if ep["pair"] is None:
            self._crash(rec)
        host, cont = ep["pair"]
        try:
            self.net.link_up(host)
        except VethError as exc:
            self._fail(context, rec, "INTERNAL", str(exc))
        resp = self.pb2.JoinResponse(interface_src_name=cont, interface_dst_prefix=DST_PREFIX)
        routes = []
        if not ep["daemon"]:
            r4, r6 = self._routes()
            routes = r4 + r6
            resp.routes.extend(prefix_bytes(c) for c in routes)
            if r4:
                if not daemon4:
                    self._fail(context, rec, "INTERNAL", "IPv4 is not enabled for the teleroute network")
                resp.via_ip_v4 = daemon4
            if r6:
                if not daemon6:
                    self._fail(context, rec, "INTERNAL", "IPv6 is not enabled for the teleroute network")
                resp.via_ip_v6 = daemon6
            resp.via = resp.via_ip_v6 or resp.via_ip_v4  # the legacy field prefers IPv6
        gw4 = next((g for g in gateways if g.version == 4), None)
        gw6 = next((g for g in gateways if g.version == 6), None)
        if gw4 is not None:
            resp.gw_ip_v4 = gw4.ip.packed + bytes([gw4.network.prefixlen])
        if gw6 is not None:
            resp.gw_ip_v6 = gw6.ip.packed + bytes([gw6.network.prefixlen])
        rec.update({"interface": cont, "daemon": ep["daemon"], "routes": routes,
                    "via_ip_v4": addr_str(resp.via_ip_v4), "via_ip_v6": addr_str(resp.via_ip_v6),
                    "via": addr_str(resp.via), "gw_ip_v4": str(gw4) if gw4 else "",
                    "gw_ip_v6": str(gw6) if gw6 else ""})
        self.calls.write(rec)
        log.info("Join %s: %s routes %s via %s %s gateways %s %s", request.id, cont, routes,
                 rec["via_ip_v4"], rec["via_ip_v6"], rec["gw_ip_v4"], rec["gw_ip_v6"])
        return resp

    def _crash(self, rec):
        """The real daemon's Join reads ep.vethHost.Attrs() of an endpoint stored with nil links
        and panics: the whole daemon dies. So does this peer, at once and without cleaning up."""
        rec["crash"] = "nil pointer dereference: endpoint %s has no veth pair" % rec["id"]
        self.calls.write(rec)
        log.critical("Join %s: %s; the daemon crashes (exit 2)", rec["id"], rec["crash"])
        logging.shutdown()
        os._exit(2)

    def Leave(self, request, context):  # noqa: N802
        rec = {"call": "Leave", "id": request.id}
        with self.lock:
            known = request.id in self.endpoints
        if not known:
            self._fail(context, rec, "NOT_FOUND", "endpoint %s not found" % request.id)
        self.calls.write(rec)
        log.info("Leave %s", request.id)
        return empty_pb2.Empty()

    def RemoveEndpoint(self, request, context):  # noqa: N802
        rec = {"call": "RemoveEndpoint", "id": request.id}
        with self.lock:
            ep = self.endpoints.pop(request.id, None)
        if ep is None:
            self._fail(context, rec, "NOT_FOUND", "endpoint %s not found" % request.id)
        rec["interface"] = ep["pair"][1] if ep["pair"] else ""
        self.calls.write(rec)
        log.info("RemoveEndpoint %s (veth kept)", request.id)
        return empty_pb2.Empty()


def make_servicer(pb2_grpc, daemon):
    class Servicer(pb2_grpc.TelerouteServicer):
        pass

    for name in ("Connect", "CreateEndpoint", "RemoveEndpoint", "Join", "Leave"):
        setattr(Servicer, name, lambda self, req, ctx, _n=name: getattr(daemon, _n)(req, ctx))
    return Servicer()


def generate_stubs(proto, outdir):
    import grpc_tools  # noqa: PLC0415
    from grpc_tools import protoc  # noqa: PLC0415
    wkt = os.path.join(os.path.dirname(grpc_tools.__file__), "_proto")
    rc = protoc.main(["protoc", "-I" + os.path.dirname(os.path.abspath(proto)), "-I" + wkt,
                      "--python_out=" + outdir, "--grpc_python_out=" + outdir, os.path.abspath(proto)])
    if rc != 0:
        raise RuntimeError("grpc_tools.protoc failed on %s (rc %d)" % (proto, rc))
    base = os.path.splitext(os.path.basename(proto))[0]
    sys.path.insert(0, outdir)
    import importlib  # noqa: PLC0415
    return importlib.import_module(base + "_pb2"), importlib.import_module(base + "_pb2_grpc")


# ---------------------------------------------------------------------------------------------
# serve

def parse_serve(argv):
    p = argparse.ArgumentParser(prog="run", description="Teleroute test daemon (see README.md)")
    p.add_argument("--netns-pid", type=int, required=True,
                   help="pid whose network namespace is the daemon container's")
    p.add_argument("--state", required=True, help="state directory")
    p.add_argument("--port", type=int, default=4039, help="gRPC port (default 4039)")
    p.add_argument("--http-port", type=int, default=80, help="HTTP port of the cluster service")
    p.add_argument("--cluster-cidrs", default="10.96.0.0/16,10.244.0.0/16")
    p.add_argument("--cluster-addrs", default="10.96.0.10/16,10.244.0.5/16")
    p.add_argument("--ipv6-cluster", default="", help="IPv6 cluster CIDRs, comma separated")
    p.add_argument("--ipv6-cluster-addr", default="", help="IPv6 addresses for cluster0")
    p.add_argument("--proto", default=DEFAULT_PROTO, help="teleroute.proto (default: the repo's)")
    return p.parse_args(argv)


def setup_logging(state):
    fmt = logging.Formatter("%(asctime)s %(levelname)s %(threadName)s: %(message)s")
    root = logging.getLogger()
    root.setLevel(logging.INFO)
    h = logging.StreamHandler(sys.stderr)
    h.setFormatter(fmt)
    root.addHandler(h)
    # Also into STATE/daemon.log unless stderr already goes there.
    path = os.path.join(state, "daemon.log")
    try:
        same = os.path.exists(path) and os.path.samestat(os.fstat(2), os.stat(path))
    except OSError:
        same = False
    if not same:
        fh = logging.FileHandler(path)
        fh.setFormatter(fmt)
        root.addHandler(fh)


def serve(argv):
    args = parse_serve(argv)
    state = os.path.abspath(args.state)
    args.state = state
    os.makedirs(state, exist_ok=True)
    for stale in ("ready", "pid", FAIL_KNOB):
        try:
            os.unlink(os.path.join(state, stale))
        except FileNotFoundError:
            pass
    setup_logging(state)

    cidrs4 = [str(ipaddress.IPv4Network(c, strict=False)) for c in split_list(args.cluster_cidrs)]
    cidrs6 = [str(ipaddress.IPv6Network(c, strict=False)) for c in split_list(args.ipv6_cluster)]
    addrs4 = [str(ipaddress.IPv4Interface(a)) for a in split_list(args.cluster_addrs)]
    addrs6 = [str(ipaddress.IPv6Interface(a)) for a in split_list(args.ipv6_cluster_addr)]
    v6 = bool(cidrs6 or addrs6)

    # 1. Enter the daemon container's network namespace, before any thread or socket exists.
    if threading.active_count() != 1:
        log.warning("%d threads exist before setns: they stay in the old namespace",
                    threading.active_count())
    target_ino = netns_inode(args.netns_pid)
    setns_net(args.netns_pid)
    if os.stat("/proc/thread-self/ns/net").st_ino != target_ino:
        raise SystemExit("setns did not switch to the namespace of pid %d" % args.netns_pid)
    log.info("pid %d in the network namespace of pid %d (net:[%d])", os.getpid(), args.netns_pid, target_ino)

    with open(os.path.join(state, "pid"), "w") as f:
        f.write("%d\n" % os.getpid())
    with open(os.path.join(state, "netns-pid"), "w") as f:
        f.write("%d\n" % args.netns_pid)
    write_atomic(os.path.join(state, "routes.json"),
                 json.dumps({"ipv4": cidrs4, "ipv6": cidrs6}, indent=1) + "\n")
    open(os.path.join(state, "calls.jsonl"), "w").close()  # fresh log for this run

    # 2. Stubs. Old grpc_tools (1.14 in Debian 12) emits descriptor code that only the cpp
    # backend of protobuf 4.21 accepts: never let the environment force the pure-Python one.
    if os.environ.get("PROTOCOL_BUFFERS_PYTHON_IMPLEMENTATION") == "python":
        del os.environ["PROTOCOL_BUFFERS_PYTHON_IMPLEMENTATION"]
    stubdir = tempfile.mkdtemp(prefix="teleroute-daemon-stubs.")
    net = None
    http = []
    server = None
    stop = threading.Event()
    why = ["signal"]
    try:
        pb2, pb2_grpc = generate_stubs(args.proto, stubdir)
        import grpc  # noqa: PLC0415
        from concurrent import futures  # noqa: PLC0415
        global empty_pb2  # noqa: PLW0603
        from google.protobuf import empty_pb2  # noqa: PLC0415

        # 3. Links and the cluster service.
        net = Net()
        net.setup(addrs4, addrs6)
        http = start_http(args.http_port, v6)

        # 4. gRPC.
        calls = CallLog(os.path.join(state, "calls.jsonl"))
        daemon = Daemon(args, pb2, net, calls)
        daemon.last_routes = (cidrs4, cidrs6)
        server = grpc.server(futures.ThreadPoolExecutor(max_workers=64, thread_name_prefix="grpc"))
        pb2_grpc.add_TelerouteServicer_to_server(make_servicer(pb2_grpc, daemon), server)
        bound = server.add_insecure_port("0.0.0.0:%d" % args.port)
        if not bound:
            raise RuntimeError("cannot listen on 0.0.0.0:%d" % args.port)
        # (gRPC treats 0.0.0.0 as the wildcard: it listens dual-stack when IPv6 is enabled.)
        server.start()

        def on_term(signum, _frame):
            why[0] = signal.Signals(signum).name
            stop.set()

        def on_usr1(_signum, _frame):
            with daemon.lock:
                daemon.generation += 1
            log.info("SIGUSR1: ending the current Connect streams")

        signal.signal(signal.SIGTERM, on_term)
        signal.signal(signal.SIGINT, on_term)
        signal.signal(signal.SIGUSR1, on_usr1)

        write_atomic(os.path.join(state, "ready"), "%d\n" % args.port)
        log.info("ready: gRPC on :%d, HTTP on :%d, cluster %s %s, cluster0 %s %s", args.port,
                 args.http_port, cidrs4, cidrs6, addrs4, addrs6)

        # 5. Wait; the daemon "dies" with its container.
        while not stop.wait(0.5):
            try:
                gone = netns_inode(args.netns_pid) != target_ino
            except OSError:
                gone = True
            if gone:
                why[0] = "process %d (the daemon container) is gone" % args.netns_pid
                stop.set()
        log.info("stopping: %s", why[0])
        daemon.stopping.set()
        time.sleep(0.5)  # let the Connect streams end with UNAVAILABLE
        server.stop(grace=1).wait()
        server = None
        calls.close()
    finally:
        if server is not None:
            server.stop(grace=None)
        for s in http:
            s.shutdown()
            s.server_close()
        if net is not None:
            net.teardown()
        shutil.rmtree(stubdir, ignore_errors=True)
        for f in ("ready",):
            try:
                os.unlink(os.path.join(state, f))
            except FileNotFoundError:
                pass
    log.info("stopped")
    return 0


# ---------------------------------------------------------------------------------------------
# helper subcommands

def state_netns_pid(state):
    with open(os.path.join(state, "netns-pid")) as f:
        return int(f.read().strip())


def cmd_cluster_addr(argv, op):
    p = argparse.ArgumentParser(prog="run %s-cluster-addr" % op)
    p.add_argument("--state", required=True)
    p.add_argument("cidr", nargs="+", help="address/len, e.g. 10.250.0.7/16")
    a = p.parse_args(argv)
    pid = state_netns_pid(a.state)
    setns_net(pid)
    from pyroute2 import IPRoute  # noqa: PLC0415
    with IPRoute() as ipr:
        found = ipr.link_lookup(ifname=DUMMY)
        if not found:
            raise SystemExit("no %s in the namespace of pid %d (is the peer running?)" % (DUMMY, pid))
        for c in a.cidr:
            iface = ipaddress.ip_interface(c)
            kw = {"flags": IFA_F_NODAD} if op == "add" and iface.version == 6 else {}
            if op == "add" and iface.version == 6:
                enable_ipv6([DUMMY])
            ipr.addr(op, index=found[0], address=str(iface.ip), prefixlen=iface.network.prefixlen, **kw)
            print("%s %s %s" % ("added" if op == "add" else "deleted", iface, DUMMY))
    return 0


def cmd_set_routes(argv):
    p = argparse.ArgumentParser(prog="run set-routes")
    p.add_argument("--state", required=True)
    p.add_argument("--ipv4", default="", help="comma separated CIDRs (replaces the list)")
    p.add_argument("--ipv6", default="", help="comma separated CIDRs (replaces the list)")
    a = p.parse_args(argv)
    data = {"ipv4": [str(ipaddress.IPv4Network(c, strict=False)) for c in split_list(a.ipv4)],
            "ipv6": [str(ipaddress.IPv6Network(c, strict=False)) for c in split_list(a.ipv6)]}
    write_atomic(os.path.join(a.state, "routes.json"), json.dumps(data, indent=1) + "\n")
    print(json.dumps(data))
    return 0


def cmd_fail_next_veth(argv):
    p = argparse.ArgumentParser(prog="run fail-next-veth")
    p.add_argument("--state", required=True)
    p.add_argument("--reason", default="operation not permitted",
                   help="the netlink error the failure reports (default: operation not permitted)")
    a = p.parse_args(argv)
    write_atomic(os.path.join(a.state, FAIL_KNOB), a.reason + "\n")
    return 0


def cmd_stop(argv):
    p = argparse.ArgumentParser(prog="run stop")
    p.add_argument("--state", required=True)
    p.add_argument("--timeout", type=float, default=10.0)
    a = p.parse_args(argv)
    try:
        with open(os.path.join(a.state, "pid")) as f:
            pid = int(f.read().strip())
    except (OSError, ValueError):
        return 0
    if not _is_peer(pid):
        return 0  # gone (or the pid now belongs to something else)
    try:
        os.kill(pid, signal.SIGTERM)
    except ProcessLookupError:
        return 0
    deadline = time.time() + a.timeout
    while time.time() < deadline:
        if not os.path.exists("/proc/%d" % pid) or _zombie(pid):
            return 0
        time.sleep(0.1)
    sys.stderr.write("teleroute-daemon: pid %d did not stop in %.0f s; sending SIGKILL\n" % (pid, a.timeout))
    try:
        os.kill(pid, signal.SIGKILL)
    except ProcessLookupError:
        pass
    return 1


def _is_peer(pid):
    """True if pid runs this directory's `run` (argv[1], resolved against its cwd)."""
    me = os.path.realpath(os.path.join(HERE, "run"))
    try:
        with open("/proc/%d/cmdline" % pid, "rb") as f:
            argv = f.read().split(b"\0")
        cwd = os.readlink("/proc/%d/cwd" % pid)
    except OSError:
        return False
    return any(os.path.realpath(os.path.join(cwd, a.decode(errors="replace"))) == me
               for a in argv[:3] if a)


def _zombie(pid):
    try:
        with open("/proc/%d/stat" % pid) as f:
            return f.read().rsplit(")", 1)[1].split()[0] == "Z"
    except OSError:
        return True


def main(argv):
    if argv and argv[0] in ("-h", "--help", "help"):
        with open(os.path.join(HERE, "README.md")) as f:
            sys.stdout.write(f.read())
        return 0
    if argv and argv[0] == "add-cluster-addr":
        return cmd_cluster_addr(argv[1:], "add")
    if argv and argv[0] == "del-cluster-addr":
        return cmd_cluster_addr(argv[1:], "del")
    if argv and argv[0] == "set-routes":
        return cmd_set_routes(argv[1:])
    if argv and argv[0] == "fail-next-veth":
        return cmd_fail_next_veth(argv[1:])
    if argv and argv[0] == "stop":
        return cmd_stop(argv[1:])
    if argv and argv[0] == "serve":
        argv = argv[1:]
    return serve(argv)

