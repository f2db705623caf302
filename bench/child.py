"""Exec a command with all the open files it may have, dying with the process that started it.

    python bench/child.py <parent pid> <command> [args...]

The bench's servers and load generator start through this instead of a
``preexec_fn`` (which is unsafe in a process with threads, as the orchestrator
is): it raises the open-file soft limit to the hard one and sets
PR_SET_PDEATHSIG, both of which survive ``exec``, so a server stops by itself
even if the orchestrator is killed.
"""

from __future__ import annotations

import ctypes
import os
import resource
import signal
import sys

PR_SET_PDEATHSIG = 1


def main() -> None:
    parent, command = int(sys.argv[1]), sys.argv[2:]
    _, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    resource.setrlimit(resource.RLIMIT_NOFILE, (hard, hard))
    ctypes.CDLL(None, use_errno=True).prctl(PR_SET_PDEATHSIG, signal.SIGTERM)
    if os.getppid() != parent:  # the orchestrator died before prctl took effect
        sys.exit(1)
    os.execv(command[0], command)


if __name__ == "__main__":
    main()
