"""HTTP version: libcurl speaks HTTP/1.1 even to a receiver that offers
HTTP/2 over TLS (ALPN), as the built-in client does (docs/operating.md,
"The two HTTP clients")."""

import os
import sys

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from harness import TLS, Receiver, check_eq, make_config, run  # noqa: E402


def test_http11_when_h2_is_offered(ctx):
    """A TLS receiver whose ALPN offers h2 before http/1.1 (the order of a
    server that prefers HTTP/2) gets HTTP/1.1 requests: had libcurl offered
    h2 too, the connection would speak HTTP/2 and this HTTP/1.1 receiver
    would never see a request."""
    sc = TLS.get().server_context()
    sc.set_alpn_protocols(["h2", "http/1.1"])
    r = Receiver(0, "127.0.0.1", sc)
    ctx.receivers.append(r)
    cfg = make_config([("h2", {"url": r.url("/hook"), "events": "*", "ca_file": TLS.get().ca})])
    ctx.daemon(cfg).start()
    rows = ctx.db.insert([{"event_type": "s3:ObjectCreated:Put", "subject": "v/%d" % i, "data": {"i": i}} for i in range(5)])
    ids = [x["event_id"] for x in rows]
    r.wait_ids(ids, "/hook", timeout=15)
    check_eq(sorted(ids), sorted(q.event_id for q in r.all("/hook")), "events received over HTTP/1.1 (each exactly once)")


if __name__ == "__main__":
    run([test_http11_when_h2_is_offered])
