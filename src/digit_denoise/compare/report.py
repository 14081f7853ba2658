"""A self-contained HTML report of a ``compare`` run (no CDN, no JavaScript, no external CSS).

:func:`write_report` writes into the comparison folder::

    report.html        tables, plots, spectrograms and audio players
    figures/*.png      matplotlib plots and clean/noisy/method spectrograms (figures.pair_figure)
    audio/*.wav        example clips (16-bit PCM, one gain per example so levels stay comparable)

Every picture and sound is referenced by a relative path inside the folder, so the folder can be
moved or zipped as a whole. All text is escaped with :func:`html.escape`.
"""

from __future__ import annotations

import html
import math
import re
from pathlib import Path
from typing import Any, Sequence

import numpy as np
from matplotlib import colormaps

from ..audio import atomic_path, write_audio
from ..figures import pair_figure, subplots

TABLE_METRICS = ("si_sdr", "si_sdr_imp", "pesq", "pesq_imp", "stoi", "stoi_imp", "mse")
LABELS = {"si_sdr": "SI-SDR (dB)", "si_sdr_imp": "ΔSI-SDR (dB)", "pesq": "PESQ-WB", "pesq_imp": "ΔPESQ",
          "stoi": "STOI", "stoi_imp": "ΔSTOI", "mse": "seed MSE"}
DIGITS = {"si_sdr": 2, "si_sdr_imp": 2, "pesq": 2, "pesq_imp": 2, "stoi": 3, "stoi_imp": 3, "mse": 4}
IMP_METRICS = ("si_sdr_imp", "pesq_imp", "stoi_imp")

CSS = """
body{font-family:system-ui,-apple-system,Segoe UI,Roboto,sans-serif;margin:1.5em auto;max-width:1400px;
     padding:0 1em;color:#222;line-height:1.4}
h1{font-size:1.6em}h2{margin-top:1.8em;border-bottom:1px solid #ccc}
table{border-collapse:collapse;margin:.6em 0 1.2em;font-size:.88em}
th,td{border:1px solid #ddd;padding:.25em .5em;text-align:right;vertical-align:top}
th{background:#f3f3f3}td.name,th.name{text-align:left;white-space:nowrap}
tr.oracle td{background:#fbf6e9}.small{color:#666;font-size:.82em}
pre{background:#f6f6f6;padding:.6em;overflow-x:auto;white-space:pre-wrap}
img{max-width:100%;border:1px solid #eee}audio{height:2em}
.scroll{overflow-x:auto}
"""


def e(x: Any) -> str:
    """Escape any value for HTML text or a quoted attribute."""
    return html.escape("" if x is None else str(x), quote=True)


def slug(text: str) -> str:
    """A file-name-safe version of ``text``."""
    return re.sub(r"[^A-Za-z0-9._-]+", "_", str(text)).strip("._") or "x"


def _num(v, digits: int, sign: bool = False) -> str:
    if v is None or not isinstance(v, (int, float)) or not math.isfinite(v):
        return "—"
    return f"{v:+.{digits}f}" if sign else f"{v:.{digits}f}"


def _save(fig, path: Path) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.tight_layout()
    with atomic_path(path) as tmp:
        fig.savefig(tmp, format="png", dpi=90)
    return path


def _colors(methods: Sequence[str]) -> dict[str, Any]:
    cmap = colormaps["tab10"]
    return {m: cmap(i % 10) for i, m in enumerate(methods)}


# ------------------------------------------------------------------------------------- plots
def plot_vs_snr(summary: dict, folder: Path) -> list[tuple[str, str]]:
    """One figure per noise kind: SI-SDR / PESQ / STOI means (95% CI bars) against SNR per method."""
    methods = [m["name"] for m in summary["methods"]]
    oracle = {m["name"]: m["is_oracle"] for m in summary["methods"]}
    colors = _colors(methods)
    kinds: dict[str, list[tuple[float, str]]] = {}
    for c in summary["conditions"]:
        if c["snr"] not in ("", None):
            kinds.setdefault(c["noise"], []).append((float(c["snr"]), c["name"]))
    out = []
    for kind, conds in kinds.items():
        conds.sort()
        fig, axes = subplots(1, 3, figsize=(14, 3.8))
        for ax, metric in zip(axes, ("si_sdr", "pesq", "stoi")):
            for m in methods:
                res = summary["results"].get(m, {})
                xs, ys, es = [], [], []
                for snr, cname in conds:
                    s = res.get(cname, {}).get(metric, {})
                    if s.get("mean") is not None:
                        xs.append(snr)
                        ys.append(s["mean"])
                        es.append(s.get("ci95_half") or 0.0)
                if xs:
                    ax.errorbar(xs, ys, yerr=es, marker="o", ms=3, capsize=2, color=colors[m],
                                ls="--" if oracle[m] else "-", label=m + (" (oracle)" if oracle[m] else ""))
            ax.set_xlabel("input SNR (dB)")
            ax.set_title(LABELS[metric])
            ax.grid(alpha=0.3)
        axes[0].legend(fontsize=7)
        fig.suptitle(f"{kind} noise")
        path = _save(fig, folder / "figures" / f"vs_snr_{slug(kind)}.png")
        out.append((kind, f"figures/{path.name}"))
    return out


def plot_groups(summary: dict, key: str, title: str, folder: Path, name: str) -> str | None:
    """Grouped bars (mean improvements per group value and method) for ``summary[key]``."""
    methods = [m["name"] for m in summary["methods"]]
    colors = _colors(methods)
    data = summary.get(key, {})
    groups = sorted({g for m in methods for g in data.get(m, {})}, key=_sort_key)
    if not groups:
        return None
    fig, axes = subplots(len(IMP_METRICS), 1, figsize=(max(8, 0.6 * len(groups) * max(1, len(methods)) / 3), 8),
                             squeeze=False)
    width = 0.8 / max(1, len(methods))
    x = np.arange(len(groups))
    for ax, metric in zip(axes[:, 0], IMP_METRICS):
        for i, m in enumerate(methods):
            ys = [data.get(m, {}).get(g, {}).get(metric, {}).get("mean") for g in groups]
            ys = [np.nan if v is None else v for v in ys]
            ax.bar(x + (i - (len(methods) - 1) / 2) * width, ys, width, color=colors[m], label=m)
        ax.set_xticks(x)
        ax.set_xticklabels(groups, rotation=45 if len(groups) > 12 else 0, fontsize=8)
        ax.set_ylabel(LABELS[metric])
        ax.axhline(0, color="k", lw=0.6)
        ax.grid(axis="y", alpha=0.3)
    axes[0, 0].legend(fontsize=7, ncol=min(4, len(methods)))
    axes[0, 0].set_title(title)
    path = _save(fig, folder / "figures" / name)
    return f"figures/{path.name}"


def plot_histograms(summary: dict, rows: list[dict], folder: Path) -> str | None:
    """Distribution of per-clip improvements for every method but the identity."""
    methods = [m["name"] for m in summary["methods"] if m["name"] != "noisy"]
    if not methods or not rows:
        return None
    colors = _colors([m["name"] for m in summary["methods"]])
    fig, axes = subplots(1, len(IMP_METRICS), figsize=(14, 3.6))
    for ax, metric in zip(axes, IMP_METRICS):
        vals = {m: np.array([r[metric] for r in rows if r["method"] == m and _finite(r.get(metric))]) for m in methods}
        allv = np.concatenate([v for v in vals.values() if v.size]) if any(v.size for v in vals.values()) else None
        if allv is None:
            continue
        lo, hi = float(allv.min()), float(allv.max())
        bins = np.linspace(lo, hi if hi > lo else lo + 1e-6, 31)
        for m, v in vals.items():
            if v.size:
                ax.hist(v, bins=bins, histtype="step", lw=1.4, color=colors[m], label=m)
        ax.axvline(0, color="k", lw=0.6)
        ax.set_xlabel(LABELS[metric])
        ax.set_ylabel("clips")
    axes[0].legend(fontsize=7)
    path = _save(fig, folder / "figures" / "hist_improvements.png")
    return f"figures/{path.name}"


def _finite(v) -> bool:
    try:
        return v is not None and math.isfinite(float(v))
    except (TypeError, ValueError):
        return False


def _sort_key(g: str):
    try:
        return (0, float(g), "")
    except (TypeError, ValueError):
        return (1, 0.0, str(g))


# ------------------------------------------------------------------------------------ tables
def _method_cell(name: str, oracle: bool) -> str:
    return f'<td class="name">{e(name)}{" <span class=small>(oracle)</span>" if oracle else ""}</td>'


def _stat_cell(s: dict | None, metric: str, detail: bool = True) -> str:
    if not s or s.get("mean") is None:
        return "<td>—</td>"
    d = DIGITS[metric]
    sign = metric.endswith("_imp")
    txt = f"<b>{e(_num(s['mean'], d, sign))}</b>"
    if detail:
        fail = f", {s['n_failed']} failed" if s.get("n_failed") else ""
        txt += (f'<br><span class="small">med {e(_num(s.get("median"), d, sign))} · '
                f'[{e(_num(s.get("ci95_low"), d, sign))}, {e(_num(s.get("ci95_high"), d, sign))}] · '
                f'n={e(s.get("n"))}{e(fail)}</span>')
    return f"<td>{txt}</td>"


def overall_table(summary: dict) -> str:
    head = "".join(f"<th>{e(LABELS[m])}</th>" for m in TABLE_METRICS)
    lines = [f'<table><tr><th class="name">method</th>{head}<th>RTF</th></tr>']
    for m in summary["methods"]:
        res = summary["overall"].get(m["name"], {})
        cells = "".join(_stat_cell(res.get(k), k) for k in TABLE_METRICS)
        rtf = summary["rtf"].get(m["name"])
        lines.append(f'<tr class="{"oracle" if m["is_oracle"] else ""}">{_method_cell(m["name"], m["is_oracle"])}'
                     f"{cells}<td>{e(_num(rtf, 4))}</td></tr>")
    lines.append("</table>")
    return "\n".join(lines)


def grid_table(summary: dict, nest: dict, columns: Sequence[str], metric: str, detail: bool = True,
               col_label: str = "") -> str:
    head = "".join(f"<th>{e(c)}</th>" for c in columns)
    lines = [f'<div class="scroll"><table><tr><th class="name">{e(col_label or "method")}</th>{head}</tr>']
    for m in summary["methods"]:
        res = nest.get(m["name"], {})
        cells = "".join(_stat_cell(res.get(str(c), {}).get(metric), metric, detail) for c in columns)
        lines.append(f'<tr class="{"oracle" if m["is_oracle"] else ""}">{_method_cell(m["name"], m["is_oracle"])}'
                     f"{cells}</tr>")
    lines.append("</table></div>")
    return "\n".join(lines)


def _groups(nest: dict) -> list[str]:
    return sorted({g for per in nest.values() for g in per}, key=_sort_key)


# ---------------------------------------------------------------------------------- examples
def write_examples(examples: list[dict], rows: list[dict], summary: dict, folder: Path) -> list[str]:
    """Spectrogram figure + audio players (clean / noisy / each method) per example clip."""
    oracle = {m["name"]: m["is_oracle"] for m in summary["methods"]}
    by_key = {(r["method"], r["condition"], r["id"]): r for r in rows}
    parts = []
    for i, ex in enumerate(examples, start=1):
        sr = int(ex["sr"])
        signals: dict[str, np.ndarray] = dict(ex["signals"])
        fig = pair_figure(signals, sr, folder / "figures" / f"example_{i}.png",
                          title=f"{ex['id']} — {ex['condition']}")
        peak = max(float(np.max(np.abs(x))) if x.size else 0.0 for x in signals.values())
        gain = 0.99 / peak if peak > 0.99 else 1.0  # one gain per example: levels stay comparable
        lines = [f"<h3>{e(ex['id'])} <span class=small>({e(ex['condition'])})</span></h3>",
                 f'<img src="figures/{e(fig.name)}" alt="{e("spectrograms of " + ex["id"])}">',
                 '<table><tr><th class="name">signal</th><th>audio</th><th>SI-SDR</th><th>PESQ</th>'
                 "<th>STOI</th></tr>"]
        for j, (name, x) in enumerate(signals.items()):
            fname = f"ex{i}_{j}_{slug(name)}.wav"
            write_audio(folder / "audio" / fname, np.clip(x * gain, -1, 1), sr, subtype="PCM_16", overwrite=True)
            r = by_key.get((name, ex["condition"], ex["id"])) if name in oracle else None
            if name == "noisy" and r is None:
                r = next((v for (m, c, cid), v in by_key.items() if c == ex["condition"] and cid == ex["id"]), None)
                r = {"si_sdr": r.get("si_sdr_noisy"), "pesq": r.get("pesq_noisy"),
                     "stoi": r.get("stoi_noisy")} if r else None
            vals = ("", "", "") if r is None else (_num(r.get("si_sdr"), 2), _num(r.get("pesq"), 2),
                                                  _num(r.get("stoi"), 3))
            label = name + (" (oracle)" if oracle.get(name) else "")
            lines.append(f'<tr><td class="name">{e(label)}</td><td><audio controls preload="none" '
                         f'src="audio/{e(fname)}"></audio></td>' + "".join(f"<td>{e(v)}</td>" for v in vals)
                         + "</tr>")
        lines.append("</table>")
        parts.append("\n".join(lines))
    return parts


# -------------------------------------------------------------------------------------- page
def write_report(folder: str | Path, summary: dict, rows: list[dict], examples: list[dict] | None = None) -> Path:
    """Write ``folder/report.html`` (+ ``figures/``, ``audio/``) and return its path."""
    folder = Path(folder)
    (folder / "figures").mkdir(parents=True, exist_ok=True)
    methods = summary["methods"]
    conds = [c["name"] for c in summary["conditions"]]
    body: list[str] = [f"<h1>digit-denoise comparison — {e(summary.get('split', ''))} split</h1>"]

    meth_txt = ", ".join(e(m["name"]) + (" <i>(oracle)</i>" if m["is_oracle"] else "") for m in methods)
    body.append("<p>"
                f"{e(summary.get('n_clips'))} clips × {e(len(conds))} condition(s) × {e(len(methods))} method(s): "
                f"{meth_txt}.<br>Manifest: <code>{e(summary.get('manifest'))}</code>, seed {e(summary.get('seed'))}. "
                "Every method enhanced the same noisy input of each clip (mixed at 16 kHz); metrics at 16 kHz. "
                "Means use common support: per metric, only clips finite for every method count. "
                "95% CI = mean ± 1.96·sd/√n. RTF = CPU seconds / audio seconds on one torch thread. "
                "Oracles use the clean reference: upper bounds, not denoisers.</p>")
    if summary.get("skipped"):
        body.append("<p>Skipped: " + "; ".join(f"<b>{e(k)}</b>: {e(v)}" for k, v in summary["skipped"].items())
                    + "</p>")

    body.append("<h2>Overall (all conditions)</h2>")
    body.append(overall_table(summary))

    body.append("<h2>Metric against input SNR</h2>")
    for kind, src in plot_vs_snr(summary, folder):
        body.append(f'<h3>{e(kind)}</h3><img src="{e(src)}" alt="{e("metrics vs SNR, " + kind)}">')

    body.append("<h2>Per condition</h2><p class=small>Cells: <b>mean</b>, median · [95% CI] · n.</p>")
    for metric in TABLE_METRICS:
        body.append(f"<h3>{e(LABELS[metric])}</h3>")
        body.append(grid_table(summary, summary["results"], conds, metric))

    body.append("<h2>Breakdowns</h2>")
    for key, label in (("by_noise", "noise kind"), ("by_snr", "input SNR (dB)"), ("by_gender", "gender")):
        nest = summary.get(key, {})
        cols = _groups(nest)
        if not cols:
            continue
        body.append(f"<h3>Per {e(label)}</h3>")
        for metric in ("si_sdr", "si_sdr_imp", "pesq_imp", "stoi_imp"):
            body.append(f"<p class=small>{e(LABELS[metric])}</p>")
            body.append(grid_table(summary, nest, cols, metric, detail=(key == "by_gender")))
    for key, label, fname in (("by_digit", "digit", "by_digit.png"), ("by_speaker", "speaker", "by_speaker.png")):
        src = plot_groups(summary, key, f"mean improvement per {label}", folder, fname)
        if src:
            body.append(f'<h3>Per {e(label)}</h3><img src="{e(src)}" alt="{e("improvement per " + label)}">')
            nest = summary.get(key, {})
            body.append(f"<p class=small>{e(LABELS['si_sdr_imp'])}</p>")
            body.append(grid_table(summary, nest, _groups(nest), "si_sdr_imp", detail=False))

    src = plot_histograms(summary, rows, folder)
    if src:
        body.append(f'<h2>Improvement histograms</h2><img src="{e(src)}" alt="improvement histograms">')

    if examples:
        body.append("<h2>Examples</h2>")
        body.extend(write_examples(examples, rows, summary, folder))

    body.append("<h2>Run</h2>")
    body.append(f"<pre>{e(summary.get('command', ''))}</pre>")
    vers = summary.get("versions", {})
    body.append("<table>" + "".join(f'<tr><td class="name">{e(k)}</td><td class="name">{e(v)}</td></tr>'
                                    for k, v in vers.items()) + "</table>")
    page = ("<!DOCTYPE html>\n<html lang=\"en\"><head><meta charset=\"utf-8\">"
            "<meta name=\"viewport\" content=\"width=device-width, initial-scale=1\">"
            f"<title>{e('digit-denoise comparison')}</title><style>{CSS}</style></head><body>\n"
            + "\n".join(body) + "\n</body></html>\n")
    path = folder / "report.html"
    with atomic_path(path) as tmp:
        tmp.write_text(page, encoding="utf-8")
    return path
