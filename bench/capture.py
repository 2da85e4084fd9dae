#!/usr/bin/env python3
"""capture.py PORT DIR: answer one POST on 127.0.0.1:PORT with 200, write its
body to DIR/body and its headers (one "Name: value" per line, as sent) to
DIR/headers, then exit 0. bench/run uses it to copy a real envelope and its
headers into the wrk reference load."""

import http.server
import os
import sys


class Handler(http.server.BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"

    def log_message(self, fmt, *args):
        pass

    def do_POST(self):
        n = int(self.headers.get("Content-Length", "0"))
        body = self.rfile.read(n)
        out = self.server.out_dir
        with open(os.path.join(out, "body.tmp"), "wb") as f:
            f.write(body)
        with open(os.path.join(out, "headers"), "w") as f:
            for k, v in self.headers.items():
                f.write("%s: %s\n" % (k, v))
        os.rename(os.path.join(out, "body.tmp"), os.path.join(out, "body"))
        self.send_response(200)
        self.send_header("Content-Length", "0")
        self.end_headers()
        self.server.done = True


def main():
    if len(sys.argv) != 3:
        sys.stderr.write("usage: capture.py PORT DIR\n")
        return 2
    srv = http.server.HTTPServer(("127.0.0.1", int(sys.argv[1])), Handler)
    srv.out_dir = sys.argv[2]
    srv.done = False
    while not srv.done:
        srv.handle_request()
    return 0


if __name__ == "__main__":
    sys.exit(main())
