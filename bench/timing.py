#!/usr/bin/env python3
"""Wall time of commands, run many times: `timing.py RUNS WARMUP -- CMD [ARGS...] [-- CMD ...]`.

A command may start with NAME=value words, set in its environment only.

Prints one line per command, `median_ms p90_ms min_ms`. With several commands the runs are
interleaved (A B A B ...), so drift in machine load hits them alike. Every run must exit 0;
otherwise the failing run's stderr is shown and the exit status is 1.

posix_spawn (vfork + exec) rather than subprocess or a shell, so the harness adds as little
as possible to a process that lives a few milliseconds; bench/run prints the floor this
harness measures for /bin/true next to the figures.
"""

import math
import os
import statistics
import subprocess
import sys
import time


def split_env(argv):
    """Splits leading NAME=value words off argv, as env(1) would, without the extra exec."""
    env = dict(os.environ)
    while argv and "=" in argv[0] and not argv[0].startswith("="):
        name, _, value = argv[0].partition("=")
        env[name] = value
        argv = argv[1:]
    return env, argv


def spawn_once(env, argv):
    """Runs argv with stdin, stdout and stderr on /dev/null; returns (seconds, exit code)."""
    actions = [
        (os.POSIX_SPAWN_OPEN, 0, os.devnull, os.O_RDONLY, 0),
        (os.POSIX_SPAWN_OPEN, 1, os.devnull, os.O_WRONLY, 0),
        (os.POSIX_SPAWN_OPEN, 2, os.devnull, os.O_WRONLY, 0),
    ]
    start = time.perf_counter()
    pid = os.posix_spawnp(argv[0], argv, env, file_actions=actions)
    _, status = os.waitpid(pid, 0)
    elapsed = time.perf_counter() - start
    return elapsed, os.waitstatus_to_exitcode(status)


def main():
    args = sys.argv[1:]
    if len(args) < 4 or args[2] != "--":
        sys.exit("usage: timing.py RUNS WARMUP -- CMD [ARGS...] [-- CMD [ARGS...]]")
    runs, warmup = int(args[0]), int(args[1])
    commands = [[]]
    for arg in args[3:]:
        if arg == "--":
            commands.append([])
        else:
            commands[-1].append(arg)
    commands = [split_env(argv) for argv in commands]
    samples = [[] for _ in commands]
    for i in range(warmup + runs):
        for (env, argv), times in zip(commands, samples):
            elapsed, code = spawn_once(env, argv)
            if code != 0:
                # Run it again with output visible, so the report says why.
                failed = subprocess.run(argv, env=env, stdin=subprocess.DEVNULL,
                                        stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
                sys.stderr.write(f"timing.py: {' '.join(argv)} exited {code}:\n"
                                 f"{failed.stderr.decode(errors='replace')}")
                sys.exit(1)
            if i >= warmup:
                times.append(elapsed * 1000.0)
    for times in samples:
        ordered = sorted(times)
        # Nearest-rank percentile: the smallest sample at or above 90% of the runs.
        p90 = ordered[math.ceil(0.9 * len(ordered)) - 1]
        print(f"{statistics.median(ordered):.2f} {p90:.2f} {ordered[0]:.2f}")


if __name__ == "__main__":
    main()
