"""`drivewm play RUN data=DIR`: a world-model run loaded, a session started on the store, and one front end
(a replayed key script, the web page or the terminal); the frames shown are recorded as a GIF on request."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Callable

from drivewm.config import ConfigError
from drivewm.play.controls import QUIT, parse_script
from drivewm.play.session import Session


@dataclass(kw_only=True)
class PlayConfig:
    """The `key=value` options of `drivewm play`."""

    past: int = 5
    """Frames of context the world model sees (the start window's length; then the last frames generated)."""
    episode: str = "0"
    """Episode of the store the drive starts in: its index or its name."""
    start: int = 0
    """First frame of the start window in that episode."""
    seed: int = 0
    """Seed of the world model's sampling (reseeded at every reset)."""
    script: str = ""
    """Keys to replay without a terminal, e.g. 'wwwaa.dr' (w/s pedal, a/d wheel, . hold, r reset, q stop)."""
    web: bool = False
    """Serve a page on 127.0.0.1 instead of reading the terminal's keys."""
    port: int = 8765
    """Port of the page (0: any free port)."""
    record: str = ""
    """Write every frame shown to this GIF when the drive ends."""
    accel_step: float = 1.0
    """m/s^2 one accelerate / brake key moves the pedal."""
    steer_step: float = 0.1
    """rad one steer key turns the wheel."""
    which: str = "best"
    """Checkpoint of the run: best or latest."""
    device: str = "cpu"
    """Device of the world model."""


def replay(session: Session, keys: list[str]) -> int:
    """Apply keys in order until 'q'; returns how many were applied."""
    for i, key in enumerate(keys):
        if key == QUIT:
            return i
        session.press(key)
    return len(keys)


def run_play(run: str | Path, data: str | Path, cfg: PlayConfig, echo: Callable[[str], None] = print) -> Session:
    """Drive `run`'s world model from `data`'s start window with the front end `cfg` asks for; returns the session."""
    from drivewm.evaluation import load_forecaster

    keys = parse_script(cfg.script) if cfg.script else None  # a bad key fails before the model loads
    if keys is not None and cfg.web:
        raise ConfigError("play: give either script=... (replayed) or web=true (the page), not both")
    if not 0 <= cfg.port <= 65535:
        raise ConfigError(f"port={cfg.port}: must be in 0..65535")
    forecaster = load_forecaster(run, cfg.which, cfg.device)
    session = Session(forecaster, data, past=cfg.past, episode=cfg.episode, start=cfg.start, seed=cfg.seed,
                      accel_step=cfg.accel_step, steer_step=cfg.steer_step, device=cfg.device)
    try:
        if keys is not None:
            replay(session, keys)
        elif cfg.web:
            from drivewm.play.web import serve

            serve(session, port=cfg.port, on_ready=lambda url: echo(f"drive at {url} (q on the page or Ctrl-C stops)"))
        else:
            from drivewm.play.terminal import play_terminal

            play_terminal(session)
    except KeyboardInterrupt:
        pass
    finally:
        if cfg.record:
            echo(f"recorded {len(session.images)} frames: {session.save_gif(cfg.record)}")
    echo(session.status())
    return session
