"""Ends this engine process when the test process that started it is gone.

The test kit passes its own process id in LAUNCHER_ENGINE_PARENT. A daemon thread compares it
with os.getppid() twice a second and exits the whole process as soon as they differ: when the
test process ends, even by SIGKILL, this process is re-parented and notices within half a second.

PR_SET_PDEATHSIG is not used on purpose: it fires when the parent *thread* ends, and the Rust
test harness starts engines from short-lived test threads.
"""

import os
import threading
import time


def _expected_parent() -> int:
    value = os.environ.get("LAUNCHER_ENGINE_PARENT", "")
    return int(value) if value.isdigit() else os.getppid()


def start() -> None:
    parent = _expected_parent()
    if os.getppid() != parent:
        os._exit(0)

    def watch() -> None:
        while True:
            if os.getppid() != parent:
                os._exit(0)
            time.sleep(0.5)

    threading.Thread(target=watch, name="parent-watch", daemon=True).start()
