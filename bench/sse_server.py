#!/usr/bin/env python3
"""A stand-in for an OpenAI-compatible chat server that streams many tokens at once:
`sse_server.py TOKENS`. Prints its base URL (`http://127.0.0.1:PORT/v1`) on stdout, then
serves until killed.

`POST /v1/chat/completions` with `"stream": true` answers TOKENS chunks of one short word each,
the last with `finish_reason: "length"`, then `data: [DONE]`, as fast as the socket takes them,
so what is measured is the client, not the server. `GET /v1/models` lists one model.
"""

import json
import sys
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer


class Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    tokens = 2000

    def log_message(self, *args):
        pass

    def do_GET(self):
        body = json.dumps({"object": "list", "data": [{"id": "bench", "object": "model"}]}).encode()
        self.send_response(200)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def do_POST(self):
        length = int(self.headers.get("Content-Length", "0"))
        request = json.loads(self.rfile.read(length) or b"{}")
        if not request.get("stream"):
            self.send_error(400, "this bench server only streams")
            return
        self.send_response(200)
        self.send_header("Content-Type", "text/event-stream")
        self.send_header("Transfer-Encoding", "chunked")
        self.end_headers()

        def send(event):
            data = f"data: {event}\n\n".encode()
            self.wfile.write(f"{len(data):x}\r\n".encode() + data + b"\r\n")

        for i in range(self.tokens):
            last = i == self.tokens - 1
            chunk = {
                "id": "chatcmpl-bench",
                "object": "chat.completion.chunk",
                "model": "bench",
                "choices": [{
                    "index": 0,
                    "delta": {"content": f" w{i}"},
                    "finish_reason": "length" if last else None,
                }],
            }
            send(json.dumps(chunk))
        send("[DONE]")
        self.wfile.write(b"0\r\n\r\n")
        self.close_connection = True


class Server(ThreadingHTTPServer):
    def handle_error(self, request, client_address):
        # A client that hangs up once it has its answer is not worth a traceback.
        if not isinstance(sys.exc_info()[1], ConnectionError):
            super().handle_error(request, client_address)


def main():
    Handler.tokens = int(sys.argv[1]) if len(sys.argv) > 1 else 2000
    server = Server(("127.0.0.1", 0), Handler)
    print(f"http://127.0.0.1:{server.server_address[1]}/v1", flush=True)
    server.serve_forever()


if __name__ == "__main__":
    main()
