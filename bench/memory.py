#!/usr/bin/env python3
"""Peak memory of each process of a command's tree: `memory.py -- CMD [ARGS...]`.

Prints one line per process, `<name> <pid> <peak_kib>`, the command itself first; exits 1
if the command does not exit 0.

Method: the command runs under ptrace with PTRACE_O_TRACEEXIT, following forks, vforks and
threads. Every process stops just before it exits, while its address space still exists, and
its VmHWM (peak resident set, the figure ru_maxrss reports) is read from /proc/<pid>/status.

Why not wait4's ru_maxrss or `/usr/bin/time -v`: that figure is the maximum over the process
and all the children it waited for, and on exec Linux seeds a process's maxrss with the
high-water mark of the image it replaced, so a fat parent (a Python harness, or the launcher
when it starts espeak-ng) inflates its child's figure. VmHWM belongs to one address space,
so each process is measured alone.
"""

import ctypes
import os
import signal
import sys

PTRACE_TRACEME = 0
PTRACE_CONT = 7
PTRACE_SETOPTIONS = 0x4200
PTRACE_O_TRACEFORK = 0x02
PTRACE_O_TRACEVFORK = 0x04
PTRACE_O_TRACECLONE = 0x08
PTRACE_O_TRACEEXEC = 0x10
PTRACE_O_TRACEEXIT = 0x40
PTRACE_O_EXITKILL = 0x100000
PTRACE_EVENT_EXIT = 6
WALL = 0x40000000

libc = ctypes.CDLL(None, use_errno=True)
libc.ptrace.argtypes = [ctypes.c_long, ctypes.c_long, ctypes.c_void_p, ctypes.c_void_p]
libc.ptrace.restype = ctypes.c_long


def ptrace(request, pid, data=0):
    if libc.ptrace(request, pid, None, ctypes.c_void_p(data)) == -1:
        err = ctypes.get_errno()
        # ESRCH: the tracee was killed meanwhile; nothing left to continue.
        if err != 3:
            raise OSError(err, os.strerror(err))


def status_fields(pid):
    fields = {}
    try:
        with open(f"/proc/{pid}/status") as f:
            for line in f:
                key, _, value = line.partition(":")
                fields[key] = value.strip()
    except OSError:
        pass
    return fields


def process_name(tgid):
    """The main thread's name: the program's (other threads have their own, e.g. `ctrl-c`)."""
    try:
        with open(f"/proc/{tgid}/comm") as f:
            return f.read().strip()
    except OSError:
        return "?"


def main():
    argv = sys.argv[1:]
    if not argv or argv[0] != "--" or len(argv) < 2:
        sys.exit("usage: memory.py -- CMD [ARGS...]")
    argv = argv[1:]

    root = os.fork()
    if root == 0:
        null = os.open(os.devnull, os.O_RDWR)
        for fd in (0, 1, 2):
            os.dup2(null, fd)
        libc.ptrace(PTRACE_TRACEME, 0, None, None)
        # Stop so the parent can set options before the command runs.
        os.kill(os.getpid(), signal.SIGSTOP)
        try:
            os.execvp(argv[0], argv)
        finally:
            os._exit(127)

    os.waitpid(root, WALL)
    ptrace(PTRACE_SETOPTIONS, root, PTRACE_O_TRACEFORK | PTRACE_O_TRACEVFORK
           | PTRACE_O_TRACECLONE | PTRACE_O_TRACEEXEC | PTRACE_O_TRACEEXIT
           | PTRACE_O_EXITKILL)
    ptrace(PTRACE_CONT, root)

    seen = {root}
    peaks = {}  # tgid -> [name, peak KiB]; threads report their process's figure
    order = []
    root_status = None
    while True:
        try:
            pid, status, _ = os.wait4(-1, WALL)
        except ChildProcessError:
            break
        if os.WIFEXITED(status) or os.WIFSIGNALED(status):
            if pid == root:
                root_status = status
            continue
        if not os.WIFSTOPPED(status):
            continue
        sig, event = os.WSTOPSIG(status), status >> 16
        deliver = 0
        if event == PTRACE_EVENT_EXIT:
            fields = status_fields(pid)
            if "VmHWM" in fields:
                tgid = int(fields["Tgid"])
                hwm = int(fields["VmHWM"].split()[0])
                if tgid not in peaks:
                    peaks[tgid] = [process_name(tgid), 0]
                    order.append(tgid)
                peaks[tgid][1] = max(peaks[tgid][1], hwm)
        elif event == 0 and not (pid not in seen and sig == signal.SIGSTOP):
            # A real signal for the tracee: pass it on. (A new tracee's first SIGSTOP is ours.)
            deliver = sig
        seen.add(pid)
        ptrace(PTRACE_CONT, pid, deliver)

    # The command itself first, then its children in the order they exited.
    order.sort(key=lambda tgid: tgid != root)
    for tgid in order:
        name, hwm = peaks[tgid]
        print(f"{name} {tgid} {hwm}")
    if root_status is None or os.waitstatus_to_exitcode(root_status) != 0:
        code = None if root_status is None else os.waitstatus_to_exitcode(root_status)
        sys.stderr.write(f"memory.py: {' '.join(argv)} exited {code}\n")
        sys.exit(1)


if __name__ == "__main__":
    main()
