"""A cloud instance metadata service stand-in for tests/tests/sensitive.rs.

usage: metadata.py ADDRESS PORT

AWS-shaped answers: 200 for metadata paths (/latest/meta-data/...), 200 with a fake credential JSON
for /latest/meta-data/iam/security-credentials/<role>, 200 with a session token for
PUT /latest/api/token, 403 for /latest/meta-data/forbidden/..., 404 for anything else.
"""

import json
import sys
from http.server import BaseHTTPRequestHandler, HTTPServer

ROLE = "podtap-test-role"
CREDENTIALS_PREFIX = "/latest/meta-data/iam/security-credentials/"


class Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"

    def answer(self, status, body, content_type="text/plain"):
        data = body.encode()
        self.send_response(status)
        self.send_header("Content-Type", content_type)
        self.send_header("Content-Length", str(len(data)))
        self.end_headers()
        self.wfile.write(data)

    def do_PUT(self):
        length = int(self.headers.get("Content-Length") or 0)
        if length:
            self.rfile.read(length)
        if self.path == "/latest/api/token":
            self.answer(200, "AQAEAFakeSessionToken==")
        else:
            self.answer(404, "not found\n")

    def do_GET(self):
        path = self.path.split("?", 1)[0]
        if path == CREDENTIALS_PREFIX:
            self.answer(200, ROLE)
        elif path.startswith(CREDENTIALS_PREFIX):
            creds = {
                "Code": "Success",
                "Type": "AWS-HMAC",
                "AccessKeyId": "ASIAFAKEFAKEFAKEFAKE",
                "SecretAccessKey": "fake",
                "Token": "fake",
            }
            self.answer(200, json.dumps(creds), "application/json")
        elif path.startswith("/latest/meta-data/forbidden"):
            self.answer(403, "forbidden\n")
        elif path == "/latest/meta-data/" or path.startswith("/latest/meta-data/"):
            self.answer(200, "ami-id\ninstance-id\nplacement/\n")
        else:
            self.answer(404, "not found\n")

    def log_message(self, *args):
        pass


def main():
    address, port = sys.argv[1], int(sys.argv[2])
    HTTPServer((address, port), Handler).serve_forever()


if __name__ == "__main__":
    main()
