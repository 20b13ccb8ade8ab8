"""Runs stable-diffusion.cpp's sd-server on 127.0.0.1 for the test kit.

Usage: sd_server.py CHECKPOINT PORT BINARY [THREADS]

Serves the A1111-style /sdapi/v1/* routes and the OpenAI-style /v1/images/generations until the
test process that started it ends. sd-server loads the whole checkpoint before it listens, so
the first answer on `/` means it is ready.

sd-server is a child of this script: it gets SIGKILL when this process ends (PR_SET_PDEATHSIG,
set from the main thread, which lives as long as the process), and this process ends when the
test process is gone (parent_watch), so the server dies with the test process even on SIGKILL.
"""

import ctypes
import errno
import os
import signal
import socket
import subprocess
import sys

import parent_watch

PR_SET_PDEATHSIG = 1


def die_with_parent() -> None:
    libc = ctypes.CDLL(None, use_errno=True)
    if libc.prctl(PR_SET_PDEATHSIG, signal.SIGKILL, 0, 0, 0) != 0:
        os._exit(127)


def port_in_use(port: int) -> bool:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        try:
            s.bind(("127.0.0.1", port))
        except OSError as e:
            return e.errno == errno.EADDRINUSE
    return False


def main() -> int:
    if len(sys.argv) not in (4, 5):
        print(__doc__, file=sys.stderr)
        return 2
    checkpoint, port, binary = sys.argv[1], int(sys.argv[2]), sys.argv[3]
    threads = sys.argv[4] if len(sys.argv) == 5 else "2"
    if not os.path.isfile(checkpoint):
        print(f"sd_server: no checkpoint at {checkpoint}", file=sys.stderr)
        return 2
    if not os.access(binary, os.X_OK):
        print(f"sd_server: no sd-server binary at {binary}", file=sys.stderr)
        return 2
    parent_watch.start()

    args = [binary, "-m", checkpoint, "--listen-ip", "127.0.0.1", "--listen-port", str(port)]
    args += ["-t", threads]
    print(f"sd_server: {' '.join(args)}", file=sys.stderr, flush=True)
    child = subprocess.Popen(args, stdin=subprocess.DEVNULL, preexec_fn=die_with_parent)

    def forward(signum: int, _frame: object) -> None:
        child.send_signal(signum)

    signal.signal(signal.SIGTERM, forward)
    signal.signal(signal.SIGINT, forward)
    code = child.wait()
    # sd-server exits quietly with 0 when it cannot listen; say why, in the words the test kit
    # looks for to retry on another port.
    if code == 0 and port_in_use(port):
        print(f"sd_server: 127.0.0.1:{port}: address already in use", file=sys.stderr)
        return 1
    return code if code >= 0 else 128 - code


if __name__ == "__main__":
    sys.exit(main())
