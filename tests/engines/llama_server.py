"""Runs llama.cpp's server (the xllamacpp wheel) on 127.0.0.1 for the test kit.

Usage: llama_server.py MODEL_GGUF PORT [ALIAS]

Serves /health, /v1/models, /v1/chat/completions and /v1/completions until the test process
that started it ends. Never fetches anything: offline is set and the model is a local file.
"""

import os
import sys
import time

import parent_watch


def main() -> int:
    if len(sys.argv) not in (3, 4):
        print(__doc__, file=sys.stderr)
        return 2
    model, port = sys.argv[1], int(sys.argv[2])
    alias = sys.argv[3] if len(sys.argv) == 4 else "smollm2-135m-instruct"
    if not os.path.isfile(model):
        print(f"llama_server: no model file at {model}", file=sys.stderr)
        return 2
    os.environ["HF_HUB_OFFLINE"] = "1"
    parent_watch.start()

    import xllamacpp

    params = xllamacpp.CommonParams()
    params.model.path = model
    params.hostnames = ["127.0.0.1"]
    params.port = port
    params.n_ctx = 2048
    params.n_parallel = 1
    # One thread by default: with two on a 2-core machine that is also building, llama.cpp's
    # threads wait on each other and a token took ~1 s instead of ~20 ms.
    threads = int(os.environ.get("LAUNCHER_LLAMA_THREADS", "1"))
    params.cpuparams.n_threads = threads
    params.cpuparams_batch.n_threads = threads
    params.model_alias = {alias}
    params.offline = True
    server = xllamacpp.Server(params)
    print(f"llama_server: serving {alias} on 127.0.0.1:{port}", file=sys.stderr, flush=True)
    while True:
        time.sleep(3600)
    del server


if __name__ == "__main__":
    sys.exit(main())
