"""One self-contained static HTML page from result directories: no network needed to view it.

Images are embedded as data URIs, there is no script, and every table comes from a results JSON,
so the page shows exactly what the evaluations wrote.
"""

from __future__ import annotations

import base64
import html
import json
import tempfile
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

from drivewm.report.figures import training_curves
from drivewm.report.results import read_results

_MIME = {".png": "image/png", ".gif": "image/gif", ".jpg": "image/jpeg", ".jpeg": "image/jpeg", ".svg": "image/svg+xml"}

CSS = """
body{font-family:system-ui,-apple-system,Segoe UI,Roboto,sans-serif;margin:2rem auto;max-width:1200px;color:#1d2430;padding:0 1rem}
h1{margin-bottom:.2rem} h2{margin-top:2.2rem;border-bottom:1px solid #dde3ea;padding-bottom:.3rem}
.meta{color:#5b6675;font-size:.9rem}
table{border-collapse:collapse;margin:.6rem 0;font-size:.88rem}
th,td{border:1px solid #dde3ea;padding:.25rem .55rem;text-align:right}
th{background:#f2f5f9} td:first-child,th:first-child{text-align:left}
.protocol{font-size:.85rem;color:#5b6675;margin:.2rem 0}
.imgs{display:flex;flex-wrap:wrap;gap:.8rem;align-items:flex-start}
.imgs figure{margin:0} .imgs img{max-width:100%;border:1px solid #dde3ea;image-rendering:pixelated}
figcaption{font-size:.8rem;color:#5b6675}
.note{background:#fff8e1;border-left:4px solid #f5b400;padding:.4rem .8rem;font-size:.9rem}
details{margin:.6rem 0}
"""


def _data_uri(path: Path) -> str:
    mime = _MIME.get(path.suffix.lower())
    if mime is None:
        raise ValueError(f"{path}: unsupported image type {path.suffix!r}")
    return f"data:{mime};base64,{base64.b64encode(path.read_bytes()).decode()}"


def _fmt(v: Any) -> str:
    if isinstance(v, float):
        return f"{v:.4g}" if abs(v) < 1e4 else f"{v:.3e}"
    return html.escape(str(v))


def _table(columns: list[str], rows: list[list[Any]]) -> str:
    head = "".join(f"<th>{html.escape(str(c))}</th>" for c in columns)
    body = "".join("<tr>" + "".join(f"<td>{_fmt(c)}</td>" for c in r) + "</tr>" for r in rows)
    return f"<table><thead><tr>{head}</tr></thead><tbody>{body}</tbody></table>"


def _figure(path: Path, caption: str) -> str:
    return f'<figure><img src="{_data_uri(path)}" alt="{html.escape(caption)}"><figcaption>{html.escape(caption)}</figcaption></figure>'


def _run_dirs(root: Path) -> list[Path]:
    """Training runs (directories with metrics.jsonl) under root, root itself included."""
    found = [p.parent for p in sorted(root.glob("metrics.jsonl"))]
    for depth in ("*/metrics.jsonl", "*/*/metrics.jsonl"):
        found += [p.parent for p in sorted(root.glob(depth))]
    return found


def build_report(dirs: list[str | Path], out_html: str | Path, title: str = "drivewm report") -> Path:
    roots = [Path(d) for d in dirs]
    for r in roots:
        if not r.is_dir():
            raise FileNotFoundError(f"{r}: not a directory")
    multi = len(roots) > 1
    label = {r: r.name or str(r) for r in roots}
    parts = [f"<h1>{html.escape(title)}</h1>"]
    parts.append(
        f'<p class="meta">generated {datetime.now(timezone.utc).strftime("%Y-%m-%d %H:%M UTC")} from '
        + ", ".join(f"<code>{html.escape(str(r))}</code>" for r in roots)
        + "</p>"
    )

    # Notes a stage wants a reader to see first (e.g. "the models did not beat the baselines").
    for r in roots:
        for doc in read_results(r):
            if doc.get("headline"):
                parts.append(f'<p class="note">{html.escape(label[r])}: {html.escape(doc["headline"])}</p>')

    # Result tables, grouped by name across runs so several runs compare side by side.
    by_name: dict[str, list[tuple[Path, dict]]] = {}
    for r in roots:
        for doc in read_results(r):
            by_name.setdefault(doc["_name"], []).append((r, doc))
    order = sorted(by_name, key=lambda n: (by_name[n][0][1].get("order", 100), n))
    for name in order:
        docs = by_name[name]
        first = docs[0][1]
        parts.append(f"<h2>{html.escape(first['title'])}</h2>")
        if first.get("protocol"):
            parts.append(f'<p class="protocol">protocol: {html.escape(first["protocol"])}</p>')
        if multi:
            rows = [[label[r], *row] for r, d in docs for row in d["rows"]]
            parts.append(_table(["run", *first["columns"]], rows))
        else:
            parts.append(_table(first["columns"], first["rows"]))
        figs = []
        for r, d in docs:
            if d.get("notes"):
                parts.append(f'<p class="meta">{html.escape(d["notes"])}</p>')
            for img in d.get("images", []):
                p = Path(d["_dir"]) / img
                if not p.is_file():
                    raise FileNotFoundError(f"{d['_dir']}/{d['_name']}.json names the image {img!r}, which is missing")
                figs.append(_figure(p, f"{label[r]}: {img}" if multi else img))
        if figs:
            parts.append(f'<div class="imgs">{"".join(figs)}</div>')

    # Training curves of every run found.
    with tempfile.TemporaryDirectory() as tmp:
        curves = []
        for r in roots:
            for run in _run_dirs(r):
                name = f"{label[r]}/{run.relative_to(r)}" if multi else str(run.relative_to(r))
                png = training_curves(run, Path(tmp) / f"curve_{len(curves)}.png", title=name)
                if png is not None:
                    curves.append(_figure(png, name))
        if curves:
            parts.append("<h2>Training curves</h2>")
            parts.append(f'<div class="imgs">{"".join(curves)}</div>')

    # Stage timings and the environment that produced the results.
    for r in roots:
        stages = r / "stages.json"
        if stages.is_file():
            st = json.loads(stages.read_text())
            rows = [[k, v.get("status", ""), round(float(v.get("seconds", 0.0)), 1), v.get("hash", "")] for k, v in st.items()]
            parts.append(f"<h2>Stages{' of ' + html.escape(label[r]) if multi else ''}</h2>")
            parts.append(_table(["stage", "status", "seconds", "config hash"], rows))
        env = r / "environment.json"
        if env.is_file():
            info = json.loads(env.read_text())
            rows = [[k, json.dumps(v) if isinstance(v, (dict, list)) else v] for k, v in info.items()]
            parts.append(f"<details><summary>Environment{' of ' + html.escape(label[r]) if multi else ''}</summary>")
            parts.append(_table(["key", "value"], rows) + "</details>")

    doc = (
        "<!doctype html><html lang=en><head><meta charset=utf-8>"
        f"<meta name=viewport content='width=device-width,initial-scale=1'><title>{html.escape(title)}</title>"
        f"<style>{CSS}</style></head><body>{''.join(parts)}</body></html>"
    )
    out = Path(out_html)
    out.parent.mkdir(parents=True, exist_ok=True)
    tmp_out = out.with_name(out.name + ".tmp")
    tmp_out.write_text(doc)
    tmp_out.replace(out)
    return out
