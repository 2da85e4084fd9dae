"""The built-in HTTP/1.1 client sends a request again, once, on a fresh
connection when a reused one closes without an answer (as libcurl does); its
debug log must then say that the request had been written and that the peer
may have read it, not that it never reached the peer.

The receiver is a raw socket server, so the test decides exactly what happens
on each connection: the first request on a connection is answered (200,
keep-alive), the second is read whole and then the connection is closed (FIN)
or reset (RST) without a byte of answer; every later request is answered."""

import errno
import json
import os
import socket
import struct
import sys
import threading

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from harness import check, check_eq, make_config, run, wait_until  # noqa: E402


class RawReceiver:
    """HTTP/1.1 on 127.0.0.1 from bare sockets. fail_mode 'close' or 'reset':
    what happens to the second request of the first connection."""

    def __init__(self, fail_mode):
        self.fail_mode = fail_mode
        self.sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        self.sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        self.sock.bind(("127.0.0.1", 0))
        self.sock.listen(16)
        self.port = self.sock.getsockname()[1]
        self.lock = threading.Lock()
        self.requests = []  # (connection number, request number on it, event id, answered)
        self.conns = 0
        self.stopping = False
        self.threads = [threading.Thread(target=self._accept, daemon=True)]
        self.threads[0].start()

    def url(self, path):
        return "http://127.0.0.1:%d%s" % (self.port, path)

    def _accept(self):
        while not self.stopping:
            try:
                c, _ = self.sock.accept()
            except OSError:
                return
            with self.lock:
                self.conns += 1
                n = self.conns
            t = threading.Thread(target=self._serve, args=(c, n), daemon=True)
            self.threads.append(t)
            t.start()

    @staticmethod
    def _read_request(c, buf):
        """One request from c (buf: bytes already read); returns (body, rest)
        or (None, b"") when the peer closed."""
        while b"\r\n\r\n" not in buf:
            got = c.recv(65536)
            if not got:
                return None, b""
            buf += got
        head, buf = buf.split(b"\r\n\r\n", 1)
        length = 0
        for line in head.split(b"\r\n")[1:]:
            name, _, value = line.partition(b":")
            if name.strip().lower() == b"content-length":
                length = int(value.strip())
        while len(buf) < length:
            got = c.recv(65536)
            if not got:
                return None, b""
            buf += got
        return buf[:length], buf[length:]

    def _serve(self, c, conn_no):
        buf = b""
        nth = 0
        try:
            while True:
                body, buf = self._read_request(c, buf)
                if body is None:
                    return
                nth += 1
                try:
                    eid = json.loads(body).get("id")
                except ValueError:
                    eid = None
                fail = conn_no == 1 and nth == 2
                with self.lock:
                    self.requests.append((conn_no, nth, eid, not fail))
                if fail:
                    if self.fail_mode == "reset":
                        c.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
                    return  # the finally closes it: FIN, or RST with the linger above
                c.sendall(b"HTTP/1.1 200 OK\r\nContent-Type: text/plain\r\nContent-Length: 3\r\n\r\nok\n")
        except OSError:
            return
        finally:
            c.close()

    def answered(self):
        with self.lock:
            return [r for r in self.requests if r[3]]

    def all(self):
        with self.lock:
            return list(self.requests)

    def close(self):
        self.stopping = True
        try:
            self.sock.close()
        except OSError:
            pass


def resend_after(ctx, fail_mode, how):
    r = RawReceiver(fail_mode)
    try:
        cfg = make_config([("raw", {"url": r.url("/hook"), "events": "*", "backoff_max": "1s"})], max_in_flight=1)
        d = ctx.daemon(cfg).start()
        clients = [x.get("message") for x in d.log() if "POSTs through" in str(x.get("message"))]
        check(clients and "built-in" in clients[0], "the endpoint at an IP address goes through the built-in client", "built-in", clients)

        first = ctx.db.insert_one("s3:ObjectCreated:Put", "resend/first")
        wait_until(lambda: len(r.answered()) == 1, 30, "the first event answered")
        wait_until(lambda: ctx.db.outbox_count() == 0 and ctx.db.delivery_count() == 0, 15, "the first event settled")
        # The connection is now idle in the daemon's pool: the next request reuses it.
        second = ctx.db.insert_one("s3:ObjectCreated:Put", "resend/second")
        wait_until(lambda: len(r.answered()) == 2, 30, "the second event answered on a fresh connection")
        wait_until(lambda: ctx.db.outbox_count() == 0 and ctx.db.delivery_count() == 0, 15, "an empty queue")

        got = r.all()
        print("%s: requests (connection, nth on it, id, answered): %s" % (fail_mode, got))
        check_eq(
            [(1, 1, first["event_id"], True), (1, 2, second["event_id"], False), (2, 1, second["event_id"], True)],
            got,
            "%s: the second request read and dropped on the reused connection, then sent again on a fresh one" % fail_mode,
        )
        msgs = [str(x.get("message")) for x in d.log()]
        resent = [m for m in msgs if "fresh connection" in m]
        print("%s: resend lines: %s" % (fail_mode, resent))
        check_eq(1, len(resent), "%s: lines about sending on a fresh connection" % fail_mode)
        want = "the request was written (the peer may have read it) and the connection closed (%s) without an answer; sending it again on a fresh connection" % how
        check(want in resent[0], "%s: the resend line says the request was written" % fail_mode, want, resent[0])
        check(
            not any("before the request" in m or "reached the peer" in m for m in msgs),
            "%s: no line claims the request never reached the peer" % fail_mode,
            "none",
            [m for m in msgs if "before the request" in m or "reached the peer" in m],
        )
        failed = [m for m in msgs if "failed" in m]
        check_eq([], failed, "%s: failed attempts logged (the resend is not one)" % fail_mode)
    finally:
        r.close()


def test_resend_after_close(ctx):
    resend_after(ctx, "close", "end of stream")


def test_resend_after_reset(ctx):
    resend_after(ctx, "reset", os.strerror(errno.ECONNRESET))


if __name__ == "__main__":
    run([test_resend_after_close, test_resend_after_reset])
