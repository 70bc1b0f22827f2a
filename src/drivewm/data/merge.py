"""`drivewm data merge OUT [SRC...]`: join shard stores into one, or rebuild OUT's manifest from its episodes.

Each source store is checked (manifest vs files) before anything is copied. Sources must share the
grid, hz, schema and generator settings (the shard field aside). An episode index present in OUT
already is skipped when its checksum agrees and refused when it differs. Episodes are copied under a
temporary name and renamed, so OUT never shows a half-copied episode.
"""

from __future__ import annotations

import os
import shutil
import uuid
from pathlib import Path

from drivewm.data.manifest import EPISODES_DIR, StoreError, read_manifest, same_layout, write_manifest
from drivewm.data.store import EpisodeStore, scan_episodes


def _generator_key(m: dict) -> dict:
    return {k: v for k, v in m.get("generator", {}).items() if k not in ("shard", "merged_from")}


def merge_stores(out: str | Path, sources: list[str | Path]) -> dict:
    """Copy the episodes of ``sources`` into ``out`` and write its manifest; return the manifest."""
    out = Path(out)
    manifests = [(Path(s), read_manifest(s)) for s in sources]
    if (out / "manifest.json").exists():
        manifests.insert(0, (out, read_manifest(out)))
    if not manifests:
        raise FileNotFoundError(f"{out}: no manifest to rebuild from and no source stores given")
    base_path, base = manifests[0]
    for path, m in manifests[1:]:
        diff = same_layout(base, m) or (None if _generator_key(base) == _generator_key(m) else "generator settings differ")
        if diff:
            raise StoreError(f"cannot merge {path} into {out}: {diff} (vs {base_path})")
    (out / EPISODES_DIR).mkdir(parents=True, exist_ok=True)
    have = {r["name"]: r for r in scan_episodes(out)}
    skipped = list(base.get("skipped", [])) if base_path == out else []
    for path, m in manifests:
        if path == out:
            continue
        src = EpisodeStore(path)
        for rec in src.episodes:
            if rec["name"] in have:
                if have[rec["name"]]["checksum"] != rec["checksum"]:
                    raise StoreError(
                        f"{path / EPISODES_DIR / rec['name']}: {out} already holds this episode index with other data"
                    )
                continue
            tmp = out / EPISODES_DIR / f".tmp-{rec['name']}-{uuid.uuid4().hex[:8]}"
            try:
                shutil.copytree(path / EPISODES_DIR / rec["name"], tmp)
                os.rename(tmp, out / EPISODES_DIR / rec["name"])
            except BaseException:
                shutil.rmtree(tmp, ignore_errors=True)
                raise
            have[rec["name"]] = rec
        skipped += m.get("skipped", [])
    manifest = dict(base)
    manifest["generator"] = dict(_generator_key(base), merged_from=[str(p) for p, _ in manifests if p != out])
    done = {r["index"] for r in have.values()}
    manifest["skipped"] = sorted((s for s in skipped if s["index"] not in done), key=lambda s: s["index"])
    manifest["episodes"] = scan_episodes(out)
    write_manifest(out, manifest)
    return manifest
