"""The terminal front end: the frame as coloured half-block characters in a rich live display, keys read one at a
time from the tty (termios / tty / select of the standard library, no window toolkit)."""

from __future__ import annotations

import os
import select
import termios
import tty
from contextlib import contextmanager
from typing import Iterator

from drivewm.errors import DrivewmError
from drivewm.play.controls import KEY_HELP, QUIT, key_name
from drivewm.play.render import fit, half_blocks
from drivewm.play.session import Session

# The arrows' escape sequences, in normal and in application cursor mode.
ESCAPES = {b"[A": "up", b"[B": "down", b"[C": "right", b"[D": "left",
           b"OA": "up", b"OB": "down", b"OC": "right", b"OD": "left"}
_ESCAPE_WAIT = 0.05  # s: the rest of an escape sequence arrives at once; a lone Esc has nothing after it
HUD_LINES = 3


@contextmanager
def keys_mode(fd: int) -> Iterator[int]:
    """The tty at `fd` delivers each key at once and echoes nothing (cbreak: Ctrl-C still interrupts); keys typed
    before (while the model loaded) are kept; the old settings come back on exit, also after an error."""
    if not os.isatty(fd):
        raise DrivewmError("play needs a terminal on stdin for keys; replay keys with script=... or open the "
                           "web page with web=true")
    old = termios.tcgetattr(fd)
    try:
        tty.setcbreak(fd, termios.TCSANOW)  # the default, TCSAFLUSH, would drop the keys typed ahead
        yield fd
    finally:
        termios.tcsetattr(fd, termios.TCSADRAIN, old)


def read_key(fd: int, timeout: float | None = None) -> str | None:
    """The next key from `fd`: a character, 'up' / 'down' / 'left' / 'right' for the arrows, 'escape' for
    another escape sequence; None when nothing came within `timeout` seconds (None: wait) or the input ended."""
    if not select.select([fd], [], [], timeout)[0]:
        return None
    try:
        first = os.read(fd, 1)
    except OSError:  # a pseudo-terminal whose other end closed
        return None
    if not first:
        return None
    if first != b"\x1b":
        return first.decode("utf-8", errors="replace")
    seq = b""
    while len(seq) < 2 and select.select([fd], [], [], _ESCAPE_WAIT)[0]:
        seq += os.read(fd, 1)
    return ESCAPES.get(seq, "escape")


def view(session: Session, width: int, height: int, message: str = ""):
    """What the terminal shows: the frame fitted into width x (height - HUD_LINES) characters, then the
    status, the keys and a message."""
    from rich.console import Group
    from rich.text import Text

    image = fit(session.image(), width, max(2, 2 * (height - HUD_LINES)))
    return Group(half_blocks(image), Text(session.status(), no_wrap=True, overflow="ellipsis"),
                 Text(KEY_HELP, style="dim", no_wrap=True, overflow="ellipsis"),
                 Text(message, style="yellow", no_wrap=True, overflow="ellipsis"))


def play_terminal(session: Session, *, fd: int | None = None, console=None) -> int:
    """Drive with the keyboard until 'q' (or the input ends); returns the number of keys applied. Each driving
    key steps the world model once; 'r' resets to the start window."""
    from rich.console import Console
    from rich.live import Live

    console = console or Console()
    fd = 0 if fd is None else fd
    applied = 0
    with keys_mode(fd), Live(console=console, auto_refresh=False, transient=False) as live:
        message = ""
        while True:
            live.update(view(session, console.width, console.height, message), refresh=True)
            key = read_key(fd)
            if key is None:
                return applied
            name = key_name(key)
            if name == QUIT:
                return applied
            if name is None:
                message = f"unknown key {key!r}; keys: {KEY_HELP}"
                continue
            session.press(name)
            applied += 1
            message = ""
