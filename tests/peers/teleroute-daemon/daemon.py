"""Test peer that plays the Telepresence daemon's Teleroute gRPC service.

See README.md in this directory for usage. Only the standard library is imported at module
level: grpc and pyroute2 are imported after the process has entered the daemon container's
network namespace (setns affects the calling thread only, and threads inherit the namespace of
the thread that creates them, so no thread may exist before the switch).
"""

import argparse
import ctypes
import hashlib
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
DST_PREFIX = "tel"
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


def run_in_netns_of(pid, fn):
    """Runs fn() in a throwaway thread that has entered the network namespace of pid.

    The calling thread's namespace is untouched; the helper thread dies afterwards.
    Returns fn's result or re-raises its exception.
    """
    box = {}

    def body():
        try:
            setns_net(pid)
            box["result"] = fn()
        except BaseException as exc:  # noqa: BLE001 - re-raised in the caller
            box["error"] = exc

    t = threading.Thread(target=body, name="netns-%d" % pid, daemon=True)
    t.start()
    t.join()
    if "error" in box:
        raise box["error"]
    return box.get("result")


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


def pair_names(addr4, addr6, endpoint_id):
    """v<8 hex> (daemon side, on br-daemon) and tp<8 hex> (plugin side).

    Key: the IPv4 address as 8 hex digits (172.30.0.3 -> ac1e0003); without IPv4 the first
    8 hex digits of sha1(16 IPv6 bytes); without any address sha1(endpoint id).
    """
    if addr4:
        key = bytes(addr4).hex()
    elif addr6:
        key = hashlib.sha1(bytes(addr6)).hexdigest()[:8]
    else:
        key = hashlib.sha1(endpoint_id.encode()).hexdigest()[:8]
    return "v" + key, "tp" + key


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

    def peer_link(self, pid, name):
        """(index, IFLA_LINK, kind) of link `name` in the namespace of pid, or None."""
        IPRoute = self.IPRoute

        def look():
            with IPRoute() as ipr:
                found = ipr.link_lookup(ifname=name)
                if not found:
                    return None
                link = ipr.get_links(found[0])[0]
                info = link.get_attr("IFLA_LINKINFO")
                kind = info.get_attr("IFLA_INFO_KIND") if info else None
                return link["index"], link.get_attr("IFLA_LINK"), kind

        return run_in_netns_of(pid, look)

    def ensure_pair(self, vname, tpname, pid):
        """Creates (or reuses) the veth pair vname <-> tpname, tpname in pid's namespace.

        Returns "reused" or "created". Raises RuntimeError("exists: ...") when tpname exists
        in the plugin's namespace but is not the peer of our vname.
        """
        with self.lock:
            vidx = self.idx(vname)
            vpeer = None
            if vidx is not None:
                vpeer = self.ipr.get_links(vidx)[0].get_attr("IFLA_LINK")
            tp = self.peer_link(pid, tpname)
            if tp is not None:
                tp_index, tp_link, tp_kind = tp
                if vidx is not None and tp_kind == "veth" and tp_index == vpeer and tp_link == vidx:
                    self._attach(vidx)
                    return "reused"
                raise RuntimeError(
                    "exists: interface %s in the namespace of pid %d (kind %s) is not the peer of "
                    "%s in the daemon namespace" % (tpname, pid, tp_kind, vname))
            if vidx is not None:
                # Our end exists but its peer is not in the plugin's namespace (still in a
                # container, or the plugin's namespace changed): replace the pair.
                log.warning("%s exists but %s is not in the namespace of pid %d: recreating the pair",
                            vname, tpname, pid)
                self.ipr.link("del", index=vidx)
            try:
                self.ipr.link("add", ifname=vname, kind="veth",
                              peer={"ifname": tpname, "net_ns_pid": pid})
            except Exception as exc:  # noqa: BLE001
                # Fallback: create both ends here and move the peer afterwards.
                log.info("veth with peer in pid %d's namespace failed (%s); moving it instead", pid, exc)
                if self.idx(vname) is not None:
                    self.ipr.link("del", index=self.idx(vname))
                self.ipr.link("add", ifname=vname, kind="veth", peer=tpname)
                self.ipr.link("set", index=self.idx(tpname), net_ns_pid=pid)
            self.created.add(vname)
            self._attach(self.idx(vname))
            return "created"

    def _attach(self, vidx):
        self.ipr.link("set", index=vidx, master=self.idx(BRIDGE))
        self.ipr.link("set", index=vidx, state="up")

    def exists(self, name):
        with self.lock:
            return self.idx(name) is not None


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
    def __init__(self, args, pb2, pb2_grpc, net, calls):
        self.args = args
        self.pb2 = pb2
        self.pb2_grpc = pb2_grpc
        self.net = net
        self.calls = calls
        self.routes_path = os.path.join(args.state, "routes.json")
        self.lock = threading.Lock()
        self.pid = None          # latest Connect pid
        self.gateways = []       # latest Connect gateways (ipaddress interfaces)
        self.endpoints = {}      # id -> dict
        self.daemon_order = []   # ids of daemon endpoints, oldest first
        self.last_routes = ([], [])
        self.stopping = threading.Event()
        self.generation = 0      # bumped by SIGUSR1: ends current Connect streams

    # -- helpers

    def _via_for(self, ep):
        """Addresses of the daemon endpoint serving ep: one in a common gateway subnet, else
        the most recent daemon endpoint."""
        daemons = [self.endpoints[i] for i in reversed(self.daemon_order) if i in self.endpoints]
        if not daemons:
            return b"", b""
        if ep["v4"] and self.gateways:
            a = ipaddress.ip_address(ep["v4"])
            nets = [g.network for g in self.gateways if g.version == 4 and a in g.network]
            for d in daemons:
                if d["v4"] and any(ipaddress.ip_address(d["v4"]) in n for n in nets):
                    return d["v4"], d["v6"]
        return daemons[0]["v4"], daemons[0]["v6"]

    def _routes(self):
        try:
            self.last_routes = read_routes(self.routes_path)
        except Exception as exc:  # noqa: BLE001
            log.warning("cannot read %s (%s): using the previous list", self.routes_path, exc)
        return self.last_routes

    # -- rpcs

    def Connect(self, request, context):  # noqa: N802
        import grpc  # noqa: PLC0415
        pid = int(request.pid)
        gws = []
        bad = []
        for g in request.gateways:
            try:
                g = bytes(g)
                if len(g) not in (5, 17):
                    raise ValueError("length %d" % len(g))
                gws.append(ipaddress.ip_interface("%s/%d" % (ipaddress.ip_address(g[:-1]), g[-1])))
            except ValueError as exc:
                bad.append("%s (%s)" % (bytes(g).hex(), exc))
        rec = {"call": "Connect", "pid": pid, "gateways": [str(g) for g in gws], "peer": context.peer()}
        if pid <= 0 or not os.path.exists(netns_path(pid)) or bad:
            msg = "bad gateways: %s" % ", ".join(bad) if bad else "no process %d (no %s)" % (pid, netns_path(pid))
            rec["error"] = "INVALID_ARGUMENT: " + msg
            self.calls.write(rec)
            context.abort(grpc.StatusCode.INVALID_ARGUMENT, msg)
        with self.lock:
            self.pid = pid
            self.gateways = gws
            gen = self.generation
        self.calls.write(rec)
        log.info("Connect from %s: pid %d gateways %s", context.peer(), pid, [str(g) for g in gws])
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
        self.calls.write({"call": "ConnectEnd", "pid": pid, "reason": reason})
        log.info("Connect stream of pid %d ends: %s", pid, reason)
        if reason != "client gone":
            context.abort(grpc.StatusCode.UNAVAILABLE, "teleroute test daemon: " + reason)

    def CreateEndpoint(self, request, context):  # noqa: N802
        import grpc  # noqa: PLC0415
        v4, v6 = bytes(request.addr_ipv4), bytes(request.addr_ipv6)
        rec = {"call": "CreateEndpoint", "id": request.id, "addr_ipv4": "", "addr_ipv6": "",
               "daemon": bool(request.daemon)}

        def fail(code, msg):
            rec["error"] = "%s: %s" % (code.name, msg)
            self.calls.write(rec)
            log.warning("CreateEndpoint %s: %s", request.id, rec["error"])
            context.abort(code, msg)

        if len(v4) not in (0, 4):
            fail(grpc.StatusCode.INVALID_ARGUMENT, "addr_ipv4 has %d bytes" % len(v4))
        if len(v6) not in (0, 16):
            fail(grpc.StatusCode.INVALID_ARGUMENT, "addr_ipv6 has %d bytes" % len(v6))
        rec["addr_ipv4"], rec["addr_ipv6"] = addr_str(v4), addr_str(v6)
        if not request.id:
            fail(grpc.StatusCode.INVALID_ARGUMENT, "empty endpoint id")
        with self.lock:
            pid = self.pid
        if pid is None:
            fail(grpc.StatusCode.FAILED_PRECONDITION, "no Connect yet: unknown plugin pid")
        vname, tpname = pair_names(v4, v6, request.id)
        rec.update({"pid": pid, "interface": tpname, "daemon_side": vname})
        try:
            how = self.net.ensure_pair(vname, tpname, pid)
        except RuntimeError as exc:
            if str(exc).startswith("exists:"):
                fail(grpc.StatusCode.ALREADY_EXISTS, str(exc)[len("exists: "):])
            fail(grpc.StatusCode.INTERNAL, str(exc))
        except Exception as exc:  # noqa: BLE001 - netlink errors
            fail(grpc.StatusCode.INTERNAL, "veth %s/%s: %s" % (vname, tpname, exc))
        rec["veth"] = how
        with self.lock:
            self.endpoints[request.id] = {"v4": v4, "v6": v6, "daemon": bool(request.daemon),
                                          "vname": vname, "tpname": tpname}
            if request.daemon:
                if request.id in self.daemon_order:
                    self.daemon_order.remove(request.id)
                self.daemon_order.append(request.id)
        self.calls.write(rec)
        log.info("CreateEndpoint %s %s %s daemon=%s: %s %s <-> %s (pid %d)", request.id,
                 rec["addr_ipv4"], rec["addr_ipv6"], bool(request.daemon), how, vname, tpname, pid)
        return empty_pb2.Empty()

    def Join(self, request, context):  # noqa: N802
        import grpc  # noqa: PLC0415
        rec = {"call": "Join", "id": request.id}
        with self.lock:
            ep = self.endpoints.get(request.id)
            if ep is not None:
                via4, via6 = (b"", b"") if ep["daemon"] else self._via_for(ep)
        if ep is None:
            rec["error"] = "NOT_FOUND"
            self.calls.write(rec)
            context.abort(grpc.StatusCode.NOT_FOUND, "unknown endpoint %s" % request.id)
        resp = self.pb2.JoinResponse(interface_src_name=ep["tpname"], interface_dst_prefix=DST_PREFIX,
                                     disable_gw=True)
        routes = []
        if not ep["daemon"]:
            r4, r6 = self._routes()
            routes = r4 + r6
            resp.routes.extend(prefix_bytes(c) for c in routes)
            resp.via_ip_v4 = via4
            resp.via_ip_v6 = via6
            resp.via = via4
        if not self.net.exists(ep["vname"]):
            log.warning("Join %s: daemon-side %s is gone", request.id, ep["vname"])
        rec.update({"interface": ep["tpname"], "daemon": ep["daemon"], "routes": routes,
                    "via_ip_v4": addr_str(via4) if not ep["daemon"] else "",
                    "via_ip_v6": addr_str(via6) if not ep["daemon"] else ""})
        self.calls.write(rec)
        log.info("Join %s: %s routes %s via %s %s", request.id, ep["tpname"], routes,
                 rec["via_ip_v4"], rec["via_ip_v6"])
        return resp

    def Leave(self, request, context):  # noqa: N802
        with self.lock:
            known = request.id in self.endpoints
        self.calls.write({"call": "Leave", "id": request.id, "known": known})
        log.info("Leave %s (known=%s)", request.id, known)
        return empty_pb2.Empty()

    def RemoveEndpoint(self, request, context):  # noqa: N802
        with self.lock:
            ep = self.endpoints.pop(request.id, None)
            if request.id in self.daemon_order:
                self.daemon_order.remove(request.id)
        self.calls.write({"call": "RemoveEndpoint", "id": request.id, "known": ep is not None,
                          "interface": ep["tpname"] if ep else ""})
        log.info("RemoveEndpoint %s (known=%s; veth kept)", request.id, ep is not None)
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
    for stale in ("ready", "pid"):
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
        daemon = Daemon(args, pb2, pb2_grpc, net, calls)
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
    if argv and argv[0] == "stop":
        return cmd_stop(argv[1:])
    if argv and argv[0] == "serve":
        argv = argv[1:]
    return serve(argv)

