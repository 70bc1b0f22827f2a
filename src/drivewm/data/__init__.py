"""drivewm.data: the data contract, the episode store, window datasets and real-layout readers.

Public API (see each module's docstring)::

    from drivewm.data import validate_episode, write_episode, EpisodeWriter, EpisodeStore
    from drivewm.data import WindowDataset, build_dataset, dataset_grid   # import torch lazily
"""

from drivewm.data.episode import EpisodeError, validate_episode
from drivewm.data.manifest import StoreError
from drivewm.data.store import EpisodeStore, EpisodeWriter, write_episode

_LAZY = {"WindowDataset", "build_dataset", "dataset_grid"}


def __getattr__(name: str):
    if name in _LAZY:  # windows imports torch; keep `import drivewm.data` light for the simulator workers
        from drivewm.data import windows

        return getattr(windows, name)
    raise AttributeError(f"module 'drivewm.data' has no attribute {name!r}")


__all__ = ["EpisodeError", "StoreError", "validate_episode", "EpisodeStore", "EpisodeWriter", "write_episode",
           "WindowDataset", "build_dataset", "dataset_grid"]
