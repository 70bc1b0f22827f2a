"""A child process that ends with its parent, however the parent ends (SIGKILL included).

A pool worker or a torchrun rank left behind by a killed parent goes on writing episodes or
checkpoints beside the user's rerun. On Linux the kernel sends SIGKILL when the parent dies
(prctl PR_SET_PDEATHSIG); elsewhere a daemon thread watches the parent id.
"""

from __future__ import annotations

import ctypes
import os
import signal
import sys
import threading
import time

_PR_SET_PDEATHSIG = 1  # linux/prctl.h


def end_with_parent(parent: int) -> None:
    """Arm this process to die when `parent` (its parent's PID, read before the call) exits."""
    if sys.platform.startswith("linux"):
        ctypes.CDLL(None, use_errno=True).prctl(_PR_SET_PDEATHSIG, signal.SIGKILL, 0, 0, 0)
    else:
        def watch() -> None:
            while os.getppid() == parent:
                time.sleep(0.5)
            os._exit(1)

        threading.Thread(target=watch, daemon=True).start()
    if os.getppid() != parent:  # the parent died before the death signal was armed
        os._exit(1)
