#!/usr/bin/env python3
"""A stand-in for the AUTOMATIC1111 WebUI API that answers at once: `a1111_server.py`.
Prints its base URL on stdout, then serves until killed.

`POST /sdapi/v1/txt2img` answers `batch_size` PNG images of `width`x`height` random pixels
(incompressible, so the images are as large as real ones), base64 in `images`, with `info` as
a JSON string the way A1111 writes it. Images are made once per size and reused, so what is
measured is the client. `GET /sdapi/v1/progress` answers 404, as stable-diffusion.cpp's server
does, so the client shows a spinner and polls nothing.
"""

import base64
import json
import os
import struct
import sys
import zlib
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

CACHE = {}
LAST = {"body": b"{}"}


def png(width, height):
    if (width, height) not in CACHE:
        raw = b"".join(b"\x00" + os.urandom(width * 3) for _ in range(height))

        def chunk(kind, data):
            body = kind + data
            return struct.pack(">I", len(data)) + body + struct.pack(">I", zlib.crc32(body))

        image = (b"\x89PNG\r\n\x1a\n"
                 + chunk(b"IHDR", struct.pack(">IIBBBBB", width, height, 8, 2, 0, 0, 0))
                 + chunk(b"IDAT", zlib.compress(raw, 1))
                 + chunk(b"IEND", b""))
        CACHE[(width, height)] = base64.b64encode(image).decode()
    return CACHE[(width, height)]


class Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"

    def log_message(self, *args):
        pass

    def answer(self, status, body):
        data = json.dumps(body).encode()
        self.send_response(status)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(data)))
        self.end_headers()
        self.wfile.write(data)

    def do_GET(self):
        if self.path.startswith("/sdapi/v1/sd-models"):
            self.answer(200, [{"title": "bench.safetensors", "model_name": "bench",
                               "hash": None, "filename": "/models/bench.safetensors"}])
        elif self.path == "/last":
            # The last txt2img request's body, for a benchmark to replay with curl.
            data = LAST["body"]
            self.send_response(200)
            self.send_header("Content-Type", "application/json")
            self.send_header("Content-Length", str(len(data)))
            self.end_headers()
            self.wfile.write(data)
        elif self.path.startswith("/sdapi/v1/samplers"):
            self.answer(200, [{"name": "Euler a", "aliases": [], "options": {}}])
        else:
            self.answer(404, {"detail": "Not Found"})

    def do_POST(self):
        length = int(self.headers.get("Content-Length", "0"))
        raw = self.rfile.read(length) or b"{}"
        request = json.loads(raw)
        if not self.path.startswith("/sdapi/v1/txt2img"):
            self.answer(404, {"detail": "Not Found"})
            return
        LAST["body"] = raw
        width, height = int(request.get("width", 512)), int(request.get("height", 512))
        count = int(request.get("batch_size", 1)) * int(request.get("n_iter", 1))
        seed = int(request.get("seed", -1))
        seed = 1234 if seed < 0 else seed
        info = {"seed": seed, "all_seeds": [seed + i for i in range(count)],
                "infotexts": [f"{request.get('prompt', '')}\nSteps: {request.get('steps', 20)}, "
                              f"Seed: {seed + i}, Size: {width}x{height}" for i in range(count)]}
        self.answer(200, {"images": [png(width, height)] * count,
                          "parameters": request, "info": json.dumps(info)})


class Server(ThreadingHTTPServer):
    def handle_error(self, request, client_address):
        if not isinstance(sys.exc_info()[1], ConnectionError):
            super().handle_error(request, client_address)


def main():
    server = Server(("127.0.0.1", 0), Handler)
    print(f"http://127.0.0.1:{server.server_address[1]}", flush=True)
    server.serve_forever()


if __name__ == "__main__":
    main()
