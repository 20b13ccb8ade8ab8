#!/usr/bin/env python3
"""Time to first token: `ttft.py RUNS BASE_URL MODEL PROMPT -- LAUNCHER_CMD...`.

Measures, RUNS times each and interleaved, the time from starting a process to the first
token it prints:
- the launcher command given (it must stream the answer to stdout): the first byte on stdout;
- `curl -N` posting the same streamed chat request to BASE_URL/chat/completions: the first
  `data:` event whose delta carries content.
Prints `launcher median p90 min` and `curl median p90 min` in milliseconds, one line each.
"""

import json
import os
import select
import statistics
import subprocess
import sys
import time


def first_byte(argv):
    start = time.perf_counter()
    proc = subprocess.Popen(argv, stdout=subprocess.PIPE, stderr=subprocess.DEVNULL,
                            stdin=subprocess.DEVNULL)
    fd = proc.stdout.fileno()
    select.select([fd], [], [], 120)
    got = os.read(fd, 1)
    elapsed = time.perf_counter() - start
    proc.stdout.read()
    code = proc.wait()
    if not got or code != 0:
        sys.exit(f"ttft: {argv[0]} printed nothing or failed (exit {code})")
    return elapsed


def first_token_curl(url, body):
    argv = ["curl", "-sN", "-X", "POST", url, "-H", "Content-Type: application/json",
            "--data-binary", body]
    start = time.perf_counter()
    proc = subprocess.Popen(argv, stdout=subprocess.PIPE, stdin=subprocess.DEVNULL)
    elapsed = None
    for line in proc.stdout:
        if not line.startswith(b"data:") or line.strip() == b"data: [DONE]":
            continue
        try:
            delta = json.loads(line[5:])["choices"][0].get("delta", {})
        except (ValueError, KeyError, IndexError):
            continue
        if delta.get("content"):
            elapsed = time.perf_counter() - start
            break
    proc.stdout.read()
    proc.wait()
    if elapsed is None:
        sys.exit("ttft: curl saw no content token")
    return elapsed


def summary(samples):
    ms = sorted(s * 1000 for s in samples)
    p90 = ms[min(len(ms) - 1, int(round(0.9 * (len(ms) - 1))))]
    return f"{statistics.median(ms):.1f} {p90:.1f} {ms[0]:.1f}"


def main():
    args = sys.argv[1:]
    if "--" not in args or len(args) < 6:
        sys.exit(__doc__)
    split = args.index("--")
    runs, base_url, model, prompt = int(args[0]), args[1], args[2], args[3]
    launcher = args[split + 1:]
    body = json.dumps({
        "model": model,
        "messages": [{"role": "user", "content": prompt}],
        "stream": True,
        "max_tokens": 16,
    })
    url = base_url.rstrip("/") + "/chat/completions"
    ours, theirs = [], []
    # One warm-up each: the server's prompt cache and the page cache.
    first_byte(launcher)
    first_token_curl(url, body)
    for _ in range(runs):
        ours.append(first_byte(launcher))
        theirs.append(first_token_curl(url, body))
    print("launcher", summary(ours))
    print("curl", summary(theirs))


if __name__ == "__main__":
    main()
