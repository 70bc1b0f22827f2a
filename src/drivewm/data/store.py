"""The on-disk episode store: one zarr (v3) group per episode, chunked and compressed, plus a manifest.

Layout of a store directory ``DIR``::

    DIR/manifest.json                       see drivewm.data.manifest
    DIR/episodes/ep_000000/                 zarr group: one array per key, attrs["drivewm"] = episode record
    DIR/episodes/.tmp-ep_000001-<hex>/      an episode being written (renamed when complete)

Chunks hold a few frames (``chunk_frames``, default 4) of the large per-frame arrays (occ, occ_mask,
camera), so a window of frames reads only the chunks it overlaps; lidar points are chunked by 65536
points and addressed through ``lidar_offsets``. Every chunk is zstd-compressed with zstd's content
checksum, so a corrupt or truncated chunk fails to decode; the error names the chunk file. All chunks
are written (also constant ones), so a missing chunk file is detected too. The episode's sha256
checksum (drivewm.data.episode.episode_checksum) is kept for ``verify``.

Writing: ``write_episode(store_dir, arrays, grid=...)`` or ``EpisodeWriter`` validate the arrays,
write the group under a temporary name, rename it, then rewrite the manifest atomically.
Reading: ``EpisodeStore(dir)`` checks the manifest against the episode directories on open.
"""

from __future__ import annotations

import asyncio
import logging
import os
import shutil
import uuid
from pathlib import Path
from typing import Callable

import numpy as np
import zarr

if int(zarr.__version__.split(".")[0]) < 3:  # the store uses the zarr v3 format and async API
    raise ImportError(f"drivewm.data needs zarr >= 3 (found {zarr.__version__}): pip install 'zarr>=3'")

import zarr.api.asynchronous  # noqa: E402
from zarr.codecs import ZstdCodec  # noqa: E402
from zarr.core.sync import sync  # noqa: E402

from drivewm.data.episode import FLOAT_WHAT, KEYS, check_finite, episode_checksum, unit_warnings, validate_episode  # noqa: E402
from drivewm.data.manifest import (  # noqa: E402
    EPISODES_DIR,
    StoreError,
    episode_index,
    episode_name,
    new_manifest,
    read_manifest,
    same_layout,
    write_manifest,
)
from drivewm.data.spec import GridSpec  # noqa: E402

log = logging.getLogger(__name__)

LIDAR_CHUNK_POINTS = 65536
SMALL_CHUNK_FRAMES = 1024
LARGE_KEYS = ("occ", "occ_mask", "camera")
ATTR = "drivewm"


def _chunks(key: str, shape: tuple[int, ...], chunk_frames: int) -> tuple[int, ...]:
    """Chunk shape: a few frames of large arrays, many frames of small ones; full extent on other axes."""
    if key == "lidar":
        return (LIDAR_CHUNK_POINTS, 4)
    first = chunk_frames if key in LARGE_KEYS else SMALL_CHUNK_FRAMES
    return (max(1, min(first, shape[0])),) + tuple(max(1, s) for s in shape[1:])


def _expected_chunk_files(shape: tuple[int, ...], chunks: tuple[int, ...]) -> int:
    return int(np.prod([-(-s // c) for s, c in zip(shape, chunks)]))


async def _write_group(path: str, arrays: dict[str, np.ndarray], chunk_frames: int, record: dict) -> None:
    # All arrays concurrently on zarr's event loop: one round trip instead of one per array.
    group = await zarr.api.asynchronous.open_group(store=path, mode="w")
    await asyncio.gather(*(
        group.create_array(
            key,
            data=np.ascontiguousarray(arr),
            chunks=_chunks(key, arr.shape, chunk_frames),
            compressors=[ZstdCodec(level=3, checksum=True)],
            config={"write_empty_chunks": True},  # every chunk on disk, so a missing file is detectable
        )
        for key, arr in sorted(arrays.items())
    ))
    await group.update_attributes({ATTR: record})


def write_episode_group(
    episodes_dir: Path, index: int, arrays: dict[str, np.ndarray], *, chunk_frames: int = 4, extra: dict | None = None
) -> dict:
    """Write validated arrays as group ``ep_<index>`` (temporary name, then rename); return its record."""
    index = episode_index(index, episodes_dir)
    name = episode_name(index)
    final = episodes_dir / name
    if final.exists():
        raise StoreError(f"{final}: episode already exists")
    episodes_dir.mkdir(parents=True, exist_ok=True)
    tmp = episodes_dir / f".tmp-{name}-{uuid.uuid4().hex[:8]}"
    record = {
        "name": name,
        "index": int(index),
        "frames": int(arrays["ego_pose" if "ego_pose" in arrays else "camera"].shape[0]),
        "arrays": {k: {"shape": list(a.shape), "dtype": str(a.dtype)} for k, a in sorted(arrays.items())},
        **(extra or {}),
        "checksum": episode_checksum(arrays),
    }
    if "lidar_offsets" in arrays:
        record["lidar_max_points"] = int(np.diff(arrays["lidar_offsets"]).max(initial=0))
    try:
        sync(_write_group(str(tmp), arrays, chunk_frames, record))
        os.rename(tmp, final)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    return record


def scan_episodes(store_dir: str | Path) -> list[dict]:
    """Records of the complete episode groups in a store directory (temporary ones are ignored)."""
    root = Path(store_dir) / EPISODES_DIR
    records = []
    if root.is_dir():
        for d in sorted(root.iterdir()):
            if d.name.startswith("ep_") and d.is_dir():
                records.append(_read_record(d))
    return records


def remove_stale_tmp(store_dir: str | Path) -> int:
    """Delete episode directories left half-written by an interrupted run; return how many."""
    root = Path(store_dir) / EPISODES_DIR
    stale = [d for d in root.glob(".tmp-ep_*")] if root.is_dir() else []
    for d in stale:
        shutil.rmtree(d, ignore_errors=True)
    return len(stale)


def _read_record(ep_dir: Path) -> dict:
    try:
        group = zarr.open_group(str(ep_dir), mode="r")
        return dict(group.attrs[ATTR])
    except Exception as e:  # zarr raises several types for unreadable metadata
        raise StoreError(f"{ep_dir}: not a readable episode group ({type(e).__name__}: {e})") from None


class EpisodeStore:
    """Read access to a store directory; checks the manifest against the episode groups on open.

    ``skip_bad=True`` reports a bad episode in ``problems`` (and through ``report``) and leaves it out,
    instead of raising. ``episodes`` are the manifest records of the usable episodes, in store order.
    """

    def __init__(self, path: str | Path, *, skip_bad: bool = False, report: Callable[[str], None] | None = None):
        self.path = Path(path)
        self.manifest = read_manifest(self.path)
        self.grid = GridSpec.from_dict(self.manifest["grid"])
        self.hz = float(self.manifest["hz"])
        self.problems: list[str] = []
        self._arrays: dict[tuple[int, int, str], zarr.Array] = {}
        on_disk = {d.name for d in (self.path / EPISODES_DIR).glob("ep_*")} if (self.path / EPISODES_DIR).is_dir() else set()
        listed = {r["name"] for r in self.manifest["episodes"]}
        for extra in sorted(on_disk - listed):
            self._problem(
                f"{self.path / EPISODES_DIR / extra}: episode directory not listed in {self.path / 'manifest.json'} "
                f"(rebuild the manifest with `drivewm data merge {self.path}`)", skip_bad, report
            )
        self.episodes: list[dict] = []
        for rec in self.manifest["episodes"]:
            try:
                self._check(rec)
                self.episodes.append(rec)
            except StoreError as e:
                self._problem(str(e), skip_bad, report)

    def _problem(self, msg: str, skip_bad: bool, report: Callable[[str], None] | None) -> None:
        if not skip_bad:
            raise StoreError(msg)
        self.problems.append(msg)
        if report is not None:
            report(msg)

    def _check(self, rec: dict) -> None:
        """Manifest record vs the episode group: attrs, array shapes/dtypes, every chunk file present."""
        ep_dir = self.path / EPISODES_DIR / rec["name"]
        where = f"{ep_dir} (listed in {self.path / 'manifest.json'})"
        if not ep_dir.is_dir():
            raise StoreError(f"{where}: episode directory missing")
        attrs = _read_record(ep_dir)
        for field in ("frames", "checksum", "arrays"):
            if attrs.get(field) != rec.get(field):
                raise StoreError(f"{where}: manifest {field} {rec.get(field)!r} does not match the files' {attrs.get(field)!r}")
        group = zarr.open_group(str(ep_dir), mode="r")
        for key, meta in rec["arrays"].items():
            if key not in KEYS:
                raise StoreError(f"{where}: unknown key {key!r}")
            try:
                arr = group[key]
            except KeyError:
                raise StoreError(f"{ep_dir / key}: array missing") from None
            if meta["dtype"] != KEYS[key].dtype or str(arr.dtype) != KEYS[key].dtype:
                raise StoreError(
                    f"{ep_dir / key}: dtype {arr.dtype} (manifest {meta['dtype']}), the data contract says {KEYS[key].dtype}"
                )
            if list(arr.shape) != meta["shape"] or str(arr.dtype) != meta["dtype"]:
                raise StoreError(
                    f"{ep_dir / key}: shape {list(arr.shape)} {arr.dtype} does not match manifest {meta['shape']} {meta['dtype']}"
                )
            want = _expected_chunk_files(arr.shape, arr.chunks)
            chunk_dir = ep_dir / key / "c"
            have = sum(len(files) for _, _, files in os.walk(chunk_dir)) if chunk_dir.is_dir() else 0
            if have != want:
                raise StoreError(f"{ep_dir / key}: {have} of {want} chunk files present (truncated episode)")

    def __len__(self) -> int:
        return len(self.episodes)

    def group(self, i: int) -> zarr.Group:
        return zarr.open_group(str(self.path / EPISODES_DIR / self.episodes[i]["name"]), mode="r")

    def array(self, i: int, key: str) -> zarr.Array:
        """Array ``key`` of episode i, opened lazily once per process (safe with DataLoader workers)."""
        cache_key = (os.getpid(), i, key)
        if cache_key not in self._arrays:
            if key not in self.episodes[i]["arrays"]:
                raise KeyError(
                    f"{self.path / EPISODES_DIR / self.episodes[i]['name']}: no key {key!r}; has {sorted(self.episodes[i]['arrays'])}"
                )
            self._arrays[cache_key] = self.group(i)[key]
        return self._arrays[cache_key]

    def __getstate__(self) -> dict:
        state = self.__dict__.copy()
        state["_arrays"] = {}  # zarr handles are reopened in each worker process
        return state

    def keys(self) -> set[str]:
        """Keys present in every usable episode."""
        sets = [set(r["arrays"]) for r in self.episodes]
        return set.intersection(*sets) if sets else set()

    def read(self, i: int, key: str, start: int | None = None, stop: int | None = None) -> np.ndarray:
        """Frames [start, stop) of one key (rows of the points for 'lidar'); a decode failure names the chunk."""
        arr = self.array(i, key)
        try:
            values = arr[slice(start, stop)]
        except Exception as e:  # zstd raises RuntimeError; keep the chunk file in the message
            raise self._locate_bad_chunk(i, key, arr, start, stop, e) from None
        return self._finite(i, key, values)

    def _finite(self, i: int, key: str, values: np.ndarray) -> np.ndarray:
        """The data contract on read: a float key holds no NaN/inf (a foreign or damaged writer's values
        would otherwise train silently). Empty agent slots may hold anything, so agents are left out."""
        if values.dtype.kind == "f" and key not in ("agents", "agents_velocity"):
            check_finite(str(self.path / EPISODES_DIR / self.episodes[i]["name"]), key, values, FLOAT_WHAT.get(key, "values"))
        return values

    def read_window(self, i: int, keys: list[str], start: int, stop: int) -> dict[str, np.ndarray]:
        """Frames [start, stop) of several per-frame keys, read concurrently (one round trip)."""
        arrays = {k: self.array(i, k) for k in keys}

        async def read_all() -> list:
            return await asyncio.gather(*(a.async_array.getitem(slice(start, stop)) for a in arrays.values()))

        try:
            window = dict(zip(arrays, sync(read_all())))
        except Exception:  # read key by key to name the bad chunk
            return {k: self.read(i, k, start, stop) for k in keys}
        return {k: self._finite(i, k, v) for k, v in window.items()}

    def _locate_bad_chunk(self, i: int, key: str, arr, start, stop, err: Exception) -> StoreError:
        c0 = arr.chunks[0]
        lo, hi, _ = slice(start, stop).indices(arr.shape[0])
        ep_dir = self.path / EPISODES_DIR / self.episodes[i]["name"]
        for c in range(lo // c0, max(lo, hi - 1) // c0 + 1):
            try:
                arr[c * c0 : (c + 1) * c0]
            except Exception as e:
                chunk_file = ep_dir / key / "c" / "/".join([str(c)] + ["0"] * (arr.ndim - 1))
                return StoreError(f"{chunk_file}: corrupt or truncated chunk ({type(e).__name__}: {e})")
        return StoreError(f"{ep_dir / key}: cannot read rows {lo}:{hi} ({type(err).__name__}: {err})")

    def read_lidar(self, i: int, start: int, stop: int) -> tuple[np.ndarray, np.ndarray]:
        """Points [P, 4] of frames [start, stop) and their offsets [stop - start + 1] starting at 0."""
        off = self.read(i, "lidar_offsets", start, stop + 1)
        points = self.read(i, "lidar", int(off[0]), int(off[-1])) if off[-1] > off[0] else np.zeros((0, 4), np.float32)
        return points, off - off[0]

    def read_episode(self, i: int) -> dict[str, np.ndarray]:
        return {k: self.read(i, k) for k in self.episodes[i]["arrays"]}

    def verify(self, i: int) -> None:
        """Recompute episode i's checksum from every chunk; StoreError if it differs from the manifest."""
        rec = self.episodes[i]
        got = episode_checksum(self.read_episode(i))
        if got != rec["checksum"]:
            raise StoreError(f"{self.path / EPISODES_DIR / rec['name']}: checksum {got} does not match manifest {rec['checksum']}")


class EpisodeWriter:
    """Write episodes from your own arrays into a store (created if missing, else appended to).

    >>> with EpisodeWriter("data/mine", grid=grid_preset("occ3d"), hz=2.0) as w:   # doctest: +SKIP
    ...     w.write({"occ": occ, "ego_pose": pose, "action": act}, source="drive-01")

    Every episode is validated against the data contract first (EpisodeError names the key and
    problem); the manifest is rewritten atomically after each episode, so an interrupted writer
    leaves a readable store of the episodes written so far.
    """

    def __init__(
        self,
        store_dir: str | Path,
        *,
        grid: GridSpec,
        hz: float = 2.0,
        sensors: dict | None = None,
        generator: dict | None = None,
        chunk_frames: int = 4,
    ) -> None:
        self.path = Path(store_dir)
        self.grid, self.chunk_frames = grid, chunk_frames
        fresh = new_manifest(grid=grid, hz=hz, sensors=sensors, generator=generator or {"name": "user"})
        if (self.path / "manifest.json").exists():
            self.manifest = read_manifest(self.path)
            diff = same_layout(self.manifest, fresh)
            if diff:
                raise StoreError(f"{self.path}: cannot append, the existing store's {diff}")
        else:
            self.path.mkdir(parents=True, exist_ok=True)
            self.manifest = fresh
            write_manifest(self.path, self.manifest)

    def next_index(self) -> int:
        taken = [r["index"] for r in self.manifest["episodes"]] + [s["index"] for s in self.manifest["skipped"]]
        return max(taken, default=-1) + 1

    def write(self, arrays: dict[str, np.ndarray], *, index: int | None = None, source: str | None = None, **extra) -> dict:
        """Validate and write one episode; return its manifest record.

        ``index`` defaults to the next free one; ``source`` (default the episode name) says where
        the data came from (a file, a scene); other keyword values (e.g. ``seed=3``) are stored in
        the episode's record.
        """
        index = self.next_index() if index is None else episode_index(index, self.path)
        source = source or episode_name(index)
        validate_episode(arrays, self.grid, source)
        for warning in unit_warnings(arrays, self.grid, float(self.manifest["hz"]), source):
            log.warning(warning)  # valid data in what look like the wrong units: written, and said
        rec = write_episode_group(
            self.path / EPISODES_DIR, index, arrays, chunk_frames=self.chunk_frames, extra={"source": source, **extra}
        )
        self.manifest["episodes"].append(rec)
        write_manifest(self.path, self.manifest)
        return rec

    def skip(self, index: int | None, source: str, error: str) -> None:
        """Record a bad episode that was left out (reported in the manifest's 'skipped' list)."""
        index = self.next_index() if index is None else episode_index(index, self.path)
        self.manifest["skipped"].append({"index": index, "source": source, "error": error})
        write_manifest(self.path, self.manifest)

    def __enter__(self) -> "EpisodeWriter":
        return self

    def __exit__(self, *exc) -> None:
        write_manifest(self.path, self.manifest)


def write_episode(store_dir: str | Path, arrays: dict[str, np.ndarray], *, grid: GridSpec, hz: float = 2.0, **kw) -> dict:
    """Validate and append one episode of your own arrays to a store; see EpisodeWriter."""
    writer_kw = {k: kw.pop(k) for k in ("sensors", "generator", "chunk_frames") if k in kw}
    return EpisodeWriter(store_dir, grid=grid, hz=hz, **writer_kw).write(arrays, **kw)


def store_size_bytes(path: str | Path) -> int:
    return sum(f.stat().st_size for f in Path(path).rglob("*") if f.is_file())
