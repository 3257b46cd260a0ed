"""A serving driver in its simplest form (tests the tier's ``serve``): answers every GET
with the payload's ``text``. Prints ``{"port": N}`` once listening on 127.0.0.1."""

import http.server
import json
import sys


def main(payload):
    body = payload["text"].encode()

    class Handler(http.server.BaseHTTPRequestHandler):
        def do_GET(self):
            self.send_response(200)
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)

        def log_message(self, *args):
            pass

    server = http.server.HTTPServer(("127.0.0.1", 0), Handler)
    print(json.dumps({"port": server.server_address[1]}), flush=True)
    sys.stdout.close()
    server.serve_forever()
