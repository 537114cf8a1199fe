#!/usr/bin/env python3
"""STAND-IN kube-apiserver for ezimg's VM tests. NOT the real kube-apiserver.

Started by the stand-in `kubeadm init` / `kubeadm join --control-plane` (never by hand), as the
transient unit kube-apiserver-standin or, for host tests, as a background process. It serves,
over TLS with the serving certificate kubeadm issued from the cluster CA:

  GET  /readyz /livez /healthz                 -> ok (anonymous, like the real server)
  GET  /version                                -> {"gitVersion": "v1.29.3-ezimg-standin", ...}
  GET  /api/v1/namespaces/kube-public/configmaps/cluster-info
                                               -> ConfigMap: kubeconfig + jws-kubeconfig-<id>
                                                  (+ ezimg-standin-primary), anonymous
  GET  /api/v1/namespaces/kube-system/configmaps/{kubeadm-config,kubelet-config}
                                               -> bootstrap token or admin client cert
  POST /ezimg-standin/csr      {node, csr}     -> {"certificate": PEM} (kubelet TLS bootstrap)
  POST /ezimg-standin/joined   {node, control_plane, at}  -> one JSON line in the joins record
  GET  /ezimg-standin/joins                    -> the joins record (JSON lines)
  GET  /ezimg-standin/discoveries              -> when each node's discovery fetched cluster-info
                                                  (node from kubeadm's User-Agent), JSON lines
  GET  /ezimg-standin/whoami                   -> "<node> <peer>": which master answered, and who
                                                  connected (the slb whose nginx proxied it)
  POST /ezimg-standin/applied  {file, sha256, kinds, objects, server_side}
  GET  /ezimg-standin/applied                  -> the applied record (JSON lines)

Only the init node's server (the "primary") holds cluster state. A joined master's server runs
with --primary URL and forwards every stateful path there (cluster-info, kube-system ConfigMaps,
/ezimg-standin/*), so whichever master the slb's nginx picks answers the same. The primary's URL
reaches joining masters inside the cluster-info ConfigMap (key ezimg-standin-primary), which
`kubeadm join` reads only after it has verified TLS against the pinned CA. Forwarding goes
straight to the primary (never through the VIP, so it cannot loop), with a client certificate of
group system:masters that `kubeadm join` issued from the local CA; the primary believes the
forwarded-for headers only from such a client.

stdlib only (Debian 12's python3); certificates are signed with the openssl CLI.
"""

import argparse
import base64
import hashlib
import hmac
import http.client
import http.server
import json
import os
import re
import socket
import ssl
import subprocess
import sys
import tempfile
import threading
import time

VERSION = "v1.29.3-ezimg-standin"
JOINS = "/var/log/ezimg-apiserver-standin.joins"
DISCOVERIES = "/var/log/ezimg-apiserver-standin.discoveries"
APPLIED = "/var/log/ezimg-apiserver-standin.applied"
LOG = "/var/log/ezimg-apiserver-standin.log"
ADMIN_GROUPS = ("system:masters", "kubeadm:cluster-admins")

ARGS = None
LOCK = threading.Lock()


def rooted(path):
    return os.path.join(ARGS.root, path.lstrip("/"))


def log(msg):
    line = f"STAND-IN kube-apiserver[{ARGS.node if ARGS else '?'}] {msg}"
    print(line, file=sys.stderr, flush=True)
    try:
        with LOCK, open(rooted(LOG), "a") as f:
            f.write(f"{line} at {int(time.time())}\n")
    except OSError:
        pass


def b64url(data):
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode()


def detached_jws(payload, token_id, secret):
    """What kubeadm's bootstrap signer writes: HS256 over the kubeconfig, payload left out."""
    header = b64url(json.dumps({"alg": "HS256", "kid": token_id}, separators=(",", ":")).encode())
    signing_input = f"{header}.{b64url(payload.encode())}".encode()
    sig = hmac.new(secret.encode(), signing_input, hashlib.sha256).digest()
    return f"{header}..{b64url(sig)}"


def subject_of(cert):
    """[(attr, value)] of a peer certificate as ssl.getpeercert() returns it."""
    if not cert:
        return []
    return [(k, v) for rdn in cert.get("subject", ()) for (k, v) in rdn]


def subject_text(pairs):
    short = {"commonName": "CN", "organizationName": "O"}
    return ",".join(f"{short.get(k, k)}={v}" for k, v in pairs)


def is_admin_subject(text):
    return any(f"O={g}" in text.split(",") for g in ADMIN_GROUPS)


def read_lines(path):
    try:
        with open(path) as f:
            return [json.loads(line) for line in f if line.strip()]
    except FileNotFoundError:
        return []


def append_line(path, record):
    with LOCK:
        os.makedirs(os.path.dirname(path), exist_ok=True)
        with open(path, "a") as f:
            f.write(json.dumps(record, sort_keys=True) + "\n")


def sign_node_csr(csr_pem, node):
    """The csrsigning controller's job for a kubelet client CSR, after the approver's checks."""
    want = {"O": "system:nodes", "CN": f"system:node:{node}"}
    with tempfile.TemporaryDirectory() as d:
        csr = os.path.join(d, "csr")
        with open(csr, "w") as f:
            f.write(csr_pem)
        p = subprocess.run(["openssl", "req", "-in", csr, "-noout", "-verify", "-subject",
                            "-nameopt", "sep_comma_plus,sname"], capture_output=True, text=True)
        if p.returncode != 0:
            raise ValueError(f"CSR does not verify: {p.stderr.strip()}")
        lines = [l for l in p.stdout.splitlines() if l.startswith("subject=")]
        subj = lines[0][len("subject="):].strip() if lines else ""
        got = dict(part.strip().split("=", 1) for part in subj.split(",") if "=" in part)
        if got != want:
            raise ValueError(f"CSR subject {subj!r} is not O=system:nodes,CN=system:node:{node}")
        ext = os.path.join(d, "ext")
        with open(ext, "w") as f:
            f.write("[v3]\nbasicConstraints=critical,CA:FALSE\n"
                    "keyUsage=critical,digitalSignature,keyEncipherment\n"
                    "extendedKeyUsage=clientAuth\nsubjectKeyIdentifier=hash\n"
                    "authorityKeyIdentifier=keyid:always\n")
        p = subprocess.run(["openssl", "x509", "-req", "-in", csr, "-CA", ARGS.ca_cert,
                            "-CAkey", ARGS.ca_key, "-set_serial", "0x" + os.urandom(16).hex(),
                            "-days", "365", "-extfile", ext, "-extensions", "v3"],
                           capture_output=True, text=True)
        if p.returncode != 0:
            raise ValueError(f"openssl x509 -req: {p.stderr.strip()}")
        return p.stdout


def load_cluster_info():
    """The cluster-info ConfigMap as the bootstrap signer leaves it, built once at start."""
    with open(rooted(ARGS.state + "/cluster-info.kubeconfig")) as f:
        kubeconfig = f.read()
    data = {"kubeconfig": kubeconfig}
    with open(rooted(ARGS.state + "/tokens")) as f:
        for tok in f.read().split():
            tid, secret = tok.split(".", 1)
            data[f"jws-kubeconfig-{tid}"] = detached_jws(kubeconfig, tid, secret)
    if ARGS.advertise_url:
        data["ezimg-standin-primary"] = ARGS.advertise_url
    return configmap("kube-public", "cluster-info", data)


def configmap(ns, name, data):
    return {"kind": "ConfigMap", "apiVersion": "v1",
            "metadata": {"name": name, "namespace": ns,
                         "annotations": {"ezimg.standin": "STAND-IN kube-apiserver"}},
            "data": data}


def tokens():
    try:
        with open(rooted(ARGS.state + "/tokens")) as f:
            return f.read().split()
    except FileNotFoundError:
        return []


# Kinds that need a CustomResourceDefinition first: a group with a dot that is not k8s.io's.
def needs_crd(api_version):
    group = api_version.split("/", 1)[0] if "/" in api_version else ""
    return "." in group and not group.endswith(".k8s.io") and group != "k8s.io"


class Handler(http.server.BaseHTTPRequestHandler):
    server_version = "ezimg-standin-kube-apiserver"
    protocol_version = "HTTP/1.0"

    def log_message(self, fmt, *args):
        log(f"{self.peer()} {fmt % args}")

    def peer(self):
        return self.client_address[0]

    def client_subject(self):
        try:
            return subject_text(subject_of(self.connection.getpeercert()))
        except (AttributeError, ValueError):
            return ""

    # What the primary believes about the original client: forwarded-for headers only from a
    # forwarder authenticated as system:masters, else the TLS peer itself.
    def origin(self):
        direct = self.client_subject()
        if self.headers.get("X-Ezimg-Standin-Via") and is_admin_subject(direct):
            return (self.headers.get("X-Ezimg-Standin-Peer", self.peer()),
                    self.headers.get("X-Ezimg-Standin-Via"),
                    self.headers.get("X-Ezimg-Standin-Client", ""))
        return self.peer(), None, direct

    def bearer_ok(self):
        auth = self.headers.get("Authorization", "")
        got = auth[7:].strip() if auth.startswith("Bearer ") else ""
        return bool(got) and any(hmac.compare_digest(got, t) for t in tokens())

    def send(self, code, body, ctype="application/json"):
        if not isinstance(body, (bytes, str)):
            body = json.dumps(body, indent=1, sort_keys=True)
        if isinstance(body, str):
            body = body.encode()
        self.send_response(code)
        self.send_header("Content-Type", ctype)
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def status(self, code, reason, message):
        self.send(code, {"kind": "Status", "apiVersion": "v1", "status": "Failure",
                         "message": f"STAND-IN kube-apiserver: {message}", "reason": reason,
                         "code": code})

    def body(self):
        return self._body

    def do_GET(self):
        self.route("GET")

    def do_POST(self):
        self.route("POST")

    def route(self, method):
        path = self.path.split("?", 1)[0]
        # Read the whole body first: answering (say 403) with it unread makes the kernel reset
        # the connection, and the client sees a dropped connection instead of the answer.
        n = int(self.headers.get("Content-Length") or 0)
        self._body = self.rfile.read(n) if n > 0 else b""
        try:
            if method == "GET" and path in ("/readyz", "/livez", "/healthz"):
                return self.send(200, "ok", "text/plain")
            if method == "GET" and path == "/ezimg-standin/whoami":
                # Which master answered, and who connected (the slb whose nginx proxied it).
                return self.send(200, f"{ARGS.node} {self.peer()}\n", "text/plain")
            if method == "GET" and path == "/version":
                return self.send(200, {"major": "1", "minor": "29", "gitVersion": VERSION,
                                       "platform": "linux/amd64",
                                       "standin": "STAND-IN kube-apiserver (ezimg vm-tests)"})
            stateful = path.startswith("/ezimg-standin/") or re.fullmatch(
                r"/api/v1/namespaces/[a-z0-9-]+/configmaps/[a-z0-9.-]+", path)
            if not stateful:
                return self.status(404, "NotFound", f"{method} {path} is not served")
            if ARGS.primary:
                return self.forward(method, path)
            return self.primary(method, path)
        except Exception as e:  # a stand-in: answer 500 and say why, never hang the client
            log(f"error on {method} {path}: {e!r}")
            return self.status(500, "InternalError", repr(e))

    def forward(self, method, path):
        if self.headers.get("X-Ezimg-Standin-Via"):
            return self.status(508, "LoopDetected", "refusing to forward a forwarded request")
        m = re.fullmatch(r"https://([^/:]+|\[[^\]]+\]):(\d+)/?", ARGS.primary)
        host, port = m.group(1).strip("[]"), int(m.group(2))
        ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
        ctx.load_verify_locations(ARGS.ca_cert)
        ctx.load_cert_chain(ARGS.forward_cert, ARGS.forward_key)
        headers = {"X-Ezimg-Standin-Via": ARGS.node,
                   "X-Ezimg-Standin-Peer": self.peer(),
                   "X-Ezimg-Standin-Client": self.client_subject()}
        for h in ("Authorization", "Content-Type", "User-Agent"):
            if self.headers.get(h):
                headers[h] = self.headers[h]
        conn = http.client.HTTPSConnection(host, port, context=ctx, timeout=15)
        try:
            conn.request(method, self.path, body=self.body() if method == "POST" else None,
                         headers=headers)
            r = conn.getresponse()
            data = r.read()
        except (OSError, http.client.HTTPException) as e:
            return self.status(502, "BadGateway", f"primary {ARGS.primary} unreachable: {e}")
        finally:
            conn.close()
        log(f"forwarded {method} {path} from {self.peer()} to {ARGS.primary}: {r.status}")
        return self.send(r.status, data, r.getheader("Content-Type", "application/json"))

    def primary(self, method, path):
        peer, via, client = self.origin()
        if method == "GET" and path == "/api/v1/namespaces/kube-public/configmaps/cluster-info":
            m = re.search(r"\(STAND-IN\) node=([a-z0-9.-]+)", self.headers.get("User-Agent") or "")
            if m:
                append_line(rooted(DISCOVERIES), {"node": m.group(1), "peer": peer, "via": via,
                                                  "recorded_at": time.time()})
            return self.send(200, CLUSTER_INFO)
        m = re.fullmatch(r"/api/v1/namespaces/kube-system/configmaps/([a-z0-9.-]+)", path)
        if method == "GET" and m:
            if not (self.bearer_ok() or is_admin_subject(client)):
                return self.status(401, "Unauthorized", "bootstrap token or admin certificate needed")
            f = rooted(f"{ARGS.state}/configmaps/kube-system/{m.group(1)}.json")
            if not os.path.exists(f):
                return self.status(404, "NotFound", f'configmaps "{m.group(1)}" not found')
            with open(f) as fh:
                return self.send(200, configmap("kube-system", m.group(1), json.load(fh)))
        if method == "POST" and path == "/ezimg-standin/csr":
            if not self.bearer_ok():
                return self.status(401, "Unauthorized", "a valid bootstrap token is needed")
            req = json.loads(self.body())
            try:
                cert = sign_node_csr(req["csr"], req["node"])
            except ValueError as e:
                return self.status(403, "Forbidden", str(e))
            log(f"signed kubelet client certificate for node {req['node']} (peer {peer}, via {via})")
            return self.send(201, {"certificate": cert})
        if method == "POST" and path == "/ezimg-standin/joined":
            if not self.bearer_ok():
                return self.status(401, "Unauthorized", "a valid bootstrap token is needed")
            req = json.loads(self.body())
            rec = {"node": str(req["node"]), "control_plane": bool(req["control_plane"]),
                   "at": req.get("at"), "peer": peer, "via": via,
                   "recorded_at": time.time(), "recorded_by": ARGS.node}
            append_line(rooted(JOINS), rec)
            log(f"join recorded: {json.dumps(rec, sort_keys=True)}")
            return self.send(201, rec)
        if method == "POST" and path == "/ezimg-standin/applied":
            if not is_admin_subject(client):
                return self.status(403, "Forbidden", f"client {client or 'anonymous'} is not an admin")
            req = json.loads(self.body())
            crds = {o.get("name") for r in read_lines(rooted(APPLIED)) for o in r.get("objects", [])
                    if o.get("kind") == "CustomResourceDefinition"}
            crds |= {o.get("name") for o in req.get("objects", [])
                     if o.get("kind") == "CustomResourceDefinition"}
            for o in req.get("objects", []):
                # The real server has no REST mapping for a custom kind until its CRD exists.
                if needs_crd(o.get("apiVersion", "")):
                    group = o["apiVersion"].split("/", 1)[0]
                    if not any(c and c.endswith("." + group) for c in crds):
                        return self.status(404, "NotFound",
                                           f'no matches for kind "{o.get("kind")}" in version '
                                           f'"{o["apiVersion"]}" (no CustomResourceDefinition '
                                           f'of group {group} applied)')
            rec = dict(req, peer=peer, via=via, client=client, recorded_at=int(time.time()))
            append_line(rooted(APPLIED), rec)
            log(f"applied {req.get('file')} sha256={req.get('sha256')} kinds={req.get('kinds')} "
                f"by {client} (peer {peer}, via {via})")
            return self.send(201, rec)
        if method == "GET" and path == "/ezimg-standin/discoveries":
            f = rooted(DISCOVERIES)
            return self.send(200, open(f).read() if os.path.exists(f) else "", "text/plain")
        if method == "GET" and path in ("/ezimg-standin/joins", "/ezimg-standin/applied"):
            f = rooted(JOINS if path.endswith("joins") else APPLIED)
            text = ""
            if os.path.exists(f):
                with open(f) as fh:
                    text = fh.read()
            return self.send(200, text, "application/x-ndjson")
        return self.status(404, "NotFound", f"{method} {path} is not served")


class Server(http.server.ThreadingHTTPServer):
    daemon_threads = True
    allow_reuse_address = True

    def __init__(self, addr, ctx):
        self.address_family = socket.AF_INET6 if ":" in addr[0] else socket.AF_INET
        super().__init__(addr, Handler)
        self.ctx = ctx

    # The TLS handshake runs in the request's thread, so a client that connects and says
    # nothing (a TCP health check, a half-open probe) cannot stall accept().
    def finish_request(self, request, client_address):
        request.settimeout(30)
        try:
            tls = self.ctx.wrap_socket(request, server_side=True)
        except (ssl.SSLError, OSError) as e:
            log(f"{client_address[0]} TLS handshake failed: {e}")
            return
        try:
            self.RequestHandlerClass(tls, client_address, self)
        finally:
            try:
                tls.close()
            except OSError:
                pass


def main():
    global ARGS, CLUSTER_INFO
    p = argparse.ArgumentParser(description="STAND-IN kube-apiserver (ezimg vm-tests): not the "
                                            "real kube-apiserver; started by the stand-in kubeadm")
    p.add_argument("--root", default="/")
    p.add_argument("--node", required=True)
    p.add_argument("--bind", default="0.0.0.0")
    p.add_argument("--port", type=int, default=6443)
    p.add_argument("--cert", required=True, help="serving certificate (absolute, under --root)")
    p.add_argument("--key", required=True)
    p.add_argument("--ca-cert", required=True)
    p.add_argument("--ca-key", help="primary only: signs kubelet client CSRs")
    p.add_argument("--state", default="/var/lib/ezimg-standin",
                   help="primary only: tokens, cluster-info kubeconfig, kube-system ConfigMaps")
    p.add_argument("--advertise-url", help="primary only: published as ezimg-standin-primary")
    p.add_argument("--primary", help="joined masters: forward stateful paths to this URL")
    p.add_argument("--forward-cert")
    p.add_argument("--forward-key")
    ARGS = p.parse_args()
    for a in ("cert", "key", "ca_cert", "ca_key", "forward_cert", "forward_key"):
        if getattr(ARGS, a):
            setattr(ARGS, a, rooted(getattr(ARGS, a)))
    if ARGS.primary and not (ARGS.forward_cert and ARGS.forward_key):
        p.error("--primary needs --forward-cert and --forward-key")
    CLUSTER_INFO = None if ARGS.primary else load_cluster_info()

    ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    ctx.load_cert_chain(ARGS.cert, ARGS.key)
    # Client certificates are optional (anonymous /readyz, bootstrap tokens) but verified.
    ctx.load_verify_locations(ARGS.ca_cert)
    ctx.verify_mode = ssl.CERT_OPTIONAL
    srv = Server((ARGS.bind, ARGS.port), ctx)
    role = f"forwarding to primary {ARGS.primary}" if ARGS.primary else "primary (holds cluster state)"
    log(f"listening on {ARGS.bind}:{ARGS.port}, {role}; NOT the real kube-apiserver: no etcd, "
        f"no resources beyond what the stand-in kubeadm/kubectl need")
    srv.serve_forever()


if __name__ == "__main__":
    main()
