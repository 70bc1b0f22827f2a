"""Drive inside a learned world model: a headless `Session` (keys or actions in, frames out), a terminal front
end (coloured half blocks, keys from the tty) and a local web page, as DIAMOND's play (eloialonso/diamond
`src/play.py`, `src/game/`) does for Atari."""

from drivewm.play.controls import KEY_HELP, Controls, ego_sim_config, key_name, parse_script
from drivewm.play.session import Session

__all__ = ["KEY_HELP", "Controls", "Session", "ego_sim_config", "key_name", "parse_script"]
