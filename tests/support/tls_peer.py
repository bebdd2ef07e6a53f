#!/usr/bin/env python3
"""A SIP peer over TLS built on Python's ssl module (OpenSSL), for the TLS tests.

The proxy speaks TLS through rustls; so do the tests' own peers in tls.rs. This
one is a second, independent TLS stack, so a misunderstanding shared by rustls on
both ends cannot pass. Driven by tests/support/pytls.rs; one JSON object per line
on stdout for every event.

  tls_peer.py uas --listen IP:PORT --cert F --key F [--client-ca F] --tls 1.2|1.3
      A TLS SBC: answers INVITE with 100, 180 and 200 (Record-Route copied, SDP
      answer), takes ACK, answers anything else 200. With --client-ca it requires a
      client certificate issued by that CA (mTLS).
  tls_peer.py uac --connect IP:PORT --server-name NAME --ca F [--cert F --key F]
                  [--bind IP] --tls 1.2|1.3 --number NUMBER
      A TLS caller: one call (INVITE, final answer, ACK, and BYE when answered),
      verifying the server's certificate for NAME against CA; with --cert/--key it
      presents a client certificate.

Events: {"event": "listening"}, {"event": "handshake", "version", "cipher",
"peer_names"}, {"event": "handshake_failed", "error"}, {"event": "request",
"method", "text"}, {"event": "response", "status", "cseq", "text"},
{"event": "closed", "error"}, {"event": "done", "final", "bye"}.
"""

import argparse
import json
import random
import socket
import ssl
import sys
import threading

VERSIONS = {"1.2": ssl.TLSVersion.TLSv1_2, "1.3": ssl.TLSVersion.TLSv1_3}
OUT = threading.Lock()


def emit(**event):
    with OUT:
        sys.stdout.write(json.dumps(event) + "\n")
        sys.stdout.flush()


def pinned(ctx, version):
    ctx.minimum_version = VERSIONS[version]
    ctx.maximum_version = VERSIONS[version]
    return ctx


def peer_names(tls):
    cert = tls.getpeercert() or {}
    return [v for (k, v) in cert.get("subjectAltName", ()) if k == "DNS"]


def handshake_event(tls):
    emit(
        event="handshake",
        version=tls.version(),
        cipher=tls.cipher()[0],
        peer_names=peer_names(tls),
    )


class Reader:
    """SIP over a stream: messages framed by Content-Length (RFC 3261 §18.3)."""

    def __init__(self, sock):
        self.sock = sock
        self.buf = b""

    def next(self):
        while True:
            while self.buf.startswith(b"\r\n"):
                self.buf = self.buf[2:]
            end = self.buf.find(b"\r\n\r\n")
            if end >= 0:
                head = self.buf[:end].decode("utf-8", "replace")
                length = 0
                for line in head.split("\r\n")[1:]:
                    name, _, value = line.partition(":")
                    if name.strip().lower() in ("content-length", "l"):
                        length = int(value.strip() or 0)
                total = end + 4 + length
                if len(self.buf) >= total:
                    raw, self.buf = self.buf[:total], self.buf[total:]
                    return Message(raw.decode("utf-8", "replace"))
            chunk = self.sock.recv(65536)
            if not chunk:
                return None
            self.buf += chunk


class Message:
    def __init__(self, text):
        self.text = text
        head, _, self.body = text.partition("\r\n\r\n")
        lines = head.split("\r\n")
        self.start = lines[0]
        self.headers = []
        for line in lines[1:]:
            name, _, value = line.partition(":")
            self.headers.append((name.strip(), value.strip()))

    def method(self):
        return None if self.start.startswith("SIP/2.0") else self.start.split()[0]

    def status(self):
        parts = self.start.split()
        return int(parts[1]) if self.start.startswith("SIP/2.0") else None

    def all(self, name):
        return [v for (k, v) in self.headers if k.lower() == name.lower()]

    def get(self, name):
        values = self.all(name)
        return values[0] if values else None


def response(req, code, reason, to_tag=None, extra=(), body=""):
    lines = ["SIP/2.0 %d %s" % (code, reason)]
    lines += ["Via: " + v for v in req.all("Via")]
    if 100 < code < 300:
        lines += ["Record-Route: " + r for r in req.all("Record-Route")]
    lines.append("From: " + req.get("From"))
    to = req.get("To")
    if to_tag and "tag=" not in to:
        to += ";tag=" + to_tag
    lines.append("To: " + to)
    lines.append("Call-ID: " + req.get("Call-ID"))
    lines.append("CSeq: " + req.get("CSeq"))
    lines += list(extra)
    if body:
        lines.append("Content-Type: application/sdp")
    lines.append("Content-Length: %d" % len(body.encode()))
    return ("\r\n".join(lines) + "\r\n\r\n" + body).encode()


SDP_ANSWER = (
    "v=0\r\no=sbc 2 2 IN IP4 127.0.0.1\r\ns=openssl-sbc\r\nc=IN IP4 127.0.0.1\r\n"
    "t=0 0\r\nm=audio 41000 RTP/AVP 8\r\na=rtpmap:8 PCMA/8000\r\n"
)
SDP_OFFER = (
    "v=0\r\no=caller 1 1 IN IP4 127.0.0.1\r\ns=openssl-caller\r\nc=IN IP4 127.0.0.1\r\n"
    "t=0 0\r\nm=audio 40000 RTP/AVP 8 0\r\na=rtpmap:8 PCMA/8000\r\na=rtpmap:0 PCMU/8000\r\n"
)


def serve(conn, ctx, local):
    try:
        tls = ctx.wrap_socket(conn, server_side=True)
    except (ssl.SSLError, OSError) as e:
        emit(event="handshake_failed", error=str(e))
        conn.close()
        return
    handshake_event(tls)
    contact = "Contact: <sip:sbc@%s:%d;transport=tls>" % local
    reader = Reader(tls)
    try:
        while True:
            req = reader.next()
            if req is None:
                break
            method = req.method()
            if method is None:
                continue
            emit(event="request", method=method, text=req.text)
            if method == "INVITE":
                tag = "ossl%08x" % random.getrandbits(32)
                tls.sendall(response(req, 100, "Trying"))
                tls.sendall(response(req, 180, "Ringing", tag, [contact]))
                tls.sendall(response(req, 200, "OK", tag, [contact], SDP_ANSWER))
            elif method != "ACK":
                tls.sendall(response(req, 200, "OK"))
    except (ssl.SSLError, OSError) as e:
        emit(event="closed", error=str(e))
    finally:
        tls.close()


def uas(args):
    ctx = pinned(ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER), args.tls)
    ctx.load_cert_chain(args.cert, args.key)
    if args.client_ca:
        ctx.verify_mode = ssl.CERT_REQUIRED
        ctx.load_verify_locations(args.client_ca)
    host, port = args.listen.rsplit(":", 1)
    srv = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    srv.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    srv.bind((host, int(port)))
    srv.listen(64)
    emit(event="listening")
    while True:
        conn, _ = srv.accept()
        conn.settimeout(60)
        threading.Thread(
            target=serve, args=(conn, ctx, (host, int(port))), daemon=True
        ).start()


def uac(args):
    ctx = pinned(ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT), args.tls)
    ctx.load_verify_locations(args.ca)
    if args.cert:
        ctx.load_cert_chain(args.cert, args.key)
    host, port = args.connect.rsplit(":", 1)
    raw = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    raw.settimeout(15)
    raw.bind((args.bind, 0))
    raw.connect((host, int(port)))
    try:
        tls = ctx.wrap_socket(raw, server_hostname=args.server_name)
    except (ssl.SSLError, OSError) as e:
        emit(event="handshake_failed", error=str(e))
        emit(event="done", final=None, bye=None)
        return
    handshake_event(tls)
    local_ip, local_port = tls.getsockname()[:2]
    n = random.getrandbits(32)
    target = "sip:%s@%s:%s;transport=tls" % (args.number, args.server_name, port)
    sent_by = "SIP/2.0/TLS %s:%d" % (local_ip, local_port)
    caller = "+919876500000"
    from_ = '"%s" <sip:%s@%s>;tag=o%d' % (caller, caller, local_ip, n)
    call_id = "ossl-%d@%s" % (n, local_ip)

    def request(method, uri, cseq, branch, to, routes=(), body=""):
        lines = ["%s %s SIP/2.0" % (method, uri), "Via: %s;branch=%s" % (sent_by, branch)]
        lines += ["Route: " + r for r in routes]
        lines += ["Max-Forwards: 70", "From: " + from_, "To: " + to, "Call-ID: " + call_id]
        lines.append("CSeq: %d %s" % (cseq, method))
        if method == "INVITE":
            lines.append(
                "Contact: <sip:%s@%s:%d;transport=tls>" % (caller, local_ip, local_port)
            )
        if body:
            lines.append("Content-Type: application/sdp")
        lines.append("Content-Length: %d" % len(body.encode()))
        return ("\r\n".join(lines) + "\r\n\r\n" + body).encode()

    reader = Reader(tls)
    final, bye = None, None
    try:
        to = "<%s>" % target
        tls.sendall(request("INVITE", target, 1, "z9hG4bK-ossl-%d-1" % n, to, body=SDP_OFFER))
        while True:
            m = reader.next()
            if m is None:
                emit(event="closed", error="EOF before a final answer")
                break
            if m.status() is None:
                continue
            emit(event="response", status=m.status(), cseq=m.get("CSeq"), text=m.text)
            if m.status() >= 200:
                final = m
                break
        if final is not None and final.status() >= 300:
            ack = request("ACK", target, 1, "z9hG4bK-ossl-%d-1" % n, final.get("To"))
            tls.sendall(ack)
        elif final is not None:
            routes = list(reversed(final.all("Record-Route")))
            contact = final.get("Contact") or "<%s>" % target
            remote = contact[contact.find("<") + 1 : contact.find(">")]
            to = final.get("To")
            tls.sendall(request("ACK", remote, 1, "z9hG4bK-ossl-%d-2" % n, to, routes))
            tls.sendall(request("BYE", remote, 2, "z9hG4bK-ossl-%d-3" % n, to, routes))
            while True:
                m = reader.next()
                if m is None:
                    emit(event="closed", error="EOF before the BYE was answered")
                    break
                if m.status() is not None and "BYE" in (m.get("CSeq") or ""):
                    emit(event="response", status=m.status(), cseq=m.get("CSeq"), text=m.text)
                    if m.status() >= 200:
                        bye = m.status()
                        break
    except (ssl.SSLError, OSError) as e:
        emit(event="closed", error=str(e))
    emit(event="done", final=final.status() if final else None, bye=bye)


def main():
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    sub = p.add_subparsers(dest="mode", required=True)
    s = sub.add_parser("uas")
    s.add_argument("--listen", required=True)
    s.add_argument("--cert", required=True)
    s.add_argument("--key", required=True)
    s.add_argument("--client-ca")
    s.add_argument("--tls", choices=VERSIONS, required=True)
    c = sub.add_parser("uac")
    c.add_argument("--connect", required=True)
    c.add_argument("--server-name", required=True)
    c.add_argument("--ca", required=True)
    c.add_argument("--cert")
    c.add_argument("--key")
    c.add_argument("--bind", default="127.0.0.1")
    c.add_argument("--tls", choices=VERSIONS, required=True)
    c.add_argument("--number", required=True)
    args = p.parse_args()
    uas(args) if args.mode == "uas" else uac(args)


if __name__ == "__main__":
    main()
