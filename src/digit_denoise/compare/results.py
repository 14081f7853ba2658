"""Generate a results page (markdown) from ``compare`` reports: ``python -m digit_denoise.compare.results``.

::

    python -m digit_denoise.compare.results reports/fsdd-white reports/fsdd-grid -o docs/results.md

For every report folder (its ``summary.json``) the page lists, per condition, each method's mean
SI-SDR / PESQ / STOI (with ΔSI-SDR over the noisy input) and its real-time factor; for our own
models also the parameter count, training steps and training time read from the run folder the
report points at. Nothing is typed by hand: rerun the comparisons, rerun this, commit the page.
"""

from __future__ import annotations

import argparse
import json
import math
from pathlib import Path

from ..audio import atomic_path
from ..errors import UserError
from ..models import build_model


def _f(v, spec: str) -> str:
    return format(v, spec) if isinstance(v, (int, float)) and math.isfinite(v) else "—"


def _describe(conf: dict) -> dict:
    """Preset / loss / model shape / data of a training config (a run's config.json or a model's
    ``training`` record)."""
    shape = conf.get("model")
    if shape:
        try:  # the family describes itself, its defaults filled in
            shape = build_model(conf["model"], conf.get("model_config") or {}).summary()
        except Exception:  # an unknown family (a newer file) or a config this version refuses
            pass
    data = ", ".join(Path(m).stem for m in str(conf.get("manifest") or "").split(",") if m) or None
    return {"preset": conf.get("preset"), "loss": conf.get("loss"), "shape": shape, "data": data}


def _run_info(path: str | None) -> dict:
    """Parameters / steps / training time / config of one of our models (its run folder, or the JSON
    beside a model file such as the shipped default)."""
    if not path:
        return {}
    p = Path(path)
    for cand in (p, p.parent, p.parent.parent, p.parent.parent.parent):
        s = cand / "summary.json"
        if s.is_file():
            try:
                d = json.loads(s.read_text(encoding="utf-8"))
                cfg = cand / "config.json"
                conf = json.loads(cfg.read_text(encoding="utf-8")) if cfg.is_file() else {}
            except ValueError:
                return {}
            return {"parameters": d.get("parameters"), "steps": d.get("steps"), "train_s": d.get("elapsed_s"),
                    **_describe(conf)}
    meta = p.with_suffix(".json") if p.suffix == ".safetensors" else p / "model.json"
    if meta.is_file():
        try:
            m = json.loads(meta.read_text(encoding="utf-8"))
        except ValueError:
            return {}
        info = {"steps": m.get("step"), **_describe(m.get("training") or {})}
        info["data"] = info["data"] or m.get("trained_on")
        try:
            from safetensors import safe_open

            with safe_open(str(p if p.suffix == ".safetensors" else p / "model.safetensors"), "pt") as f:
                info["parameters"] = sum(math.prod(f.get_slice(k).get_shape()) for k in f.keys())
        except Exception:  # a damaged or missing file: the table shows "—"
            pass
        return info
    return {}


def section(folder: Path) -> str:
    s = _load(folder)
    info = {m["name"]: {**m, **_run_info(m.get("path"))} for m in s["methods"]}
    # only the test split is speaker-disjoint by construction; what else a run trained on is in its table row
    held_out = " (speakers held out of its train and val splits)" if s["split"] == "test" else ""
    out = [f"## {folder.name}", "",
           f"`{s.get('command', '')}`", "",
           f"{s['n_clips']} clips of the `{s['split']}` split of "
           f"{' + '.join(f'`{Path(m).name}`' for m in s['manifest'].split(','))}{held_out}, "
           f"metrics at {s['sample_rate']} Hz; means over clips valid for "
           f"every method. RTF: {s.get('rtf_note', '')}.", ""]
    ours = [m for m in info.values() if m.get("kind") == "ours"]
    if ours:
        out += ["| model | preset | network | loss | training data | parameters | training steps | training time |",
                "|---|---|---|---|---|---:|---:|---:|"]
        for m in ours:
            t = m.get("train_s")
            out.append(f"| {m['name']} | {m.get('preset') or '—'} | {m.get('shape') or '—'} | {m.get('loss') or '—'} | "
                       f"{m.get('data') or '—'} | {_f(m.get('parameters'), ',')} | {_f(m.get('steps'), 'd')} | "
                       f"{_f(t / 60 if isinstance(t, (int, float)) else None, '.1f')} min |")
        out.append("")
    out += corpus_tables(s, info)
    for cond in s["conditions"]:
        c = cond["name"]
        out += [f"### {c}", "", "| method | SI-SDR (dB) | ΔSI-SDR | PESQ-WB | STOI | seed MSE | RTF |",
                "|---|---:|---:|---:|---:|---:|---:|"]
        for name, m in info.items():
            r = s["results"].get(name, {}).get(c)
            if not r:
                continue
            g = lambda k: (r.get(k) or {}).get("mean")  # noqa: E731
            label = name + (" (oracle)" if m.get("is_oracle") else "") + (" **(ours)**" if m.get("kind") == "ours" else "")
            out.append(f"| {label} | {_f(g('si_sdr'), '.2f')} | {_f(g('si_sdr_imp'), '+.2f')} | "
                       f"{_f(g('pesq'), '.2f')} | {_f(g('stoi'), '.3f')} | {_f(g('mse'), '.4f')} | "
                       f"{_f(s['rtf'].get(name), '.4f')} |")
        out.append("")
    return "\n".join(out)


METRIC_LABELS = (("si_sdr", "SI-SDR (dB)", ".2f"), ("pesq", "PESQ-WB", ".2f"), ("stoi", "STOI", ".3f"))


def corpus_tables(s: dict, info: dict) -> list[str]:
    """Per metric, one table: a row per (corpus, method), a column per condition (multi-corpus reports)."""
    by = s.get("results_by_corpus") or {}
    corpora = list(s.get("corpora") or {})
    if len(corpora) < 2:
        return []
    conds = [c["name"] for c in s["conditions"]]
    out = [f"### per corpus ({', '.join(f'{c}: {n} clips' for c, n in s['corpora'].items())})", ""]
    for key, label, spec in METRIC_LABELS:
        out += [f"{label}:", "", "| corpus | method | " + " | ".join(conds) + " |",
                "|---|---|" + "---:|" * len(conds)]
        for corpus in corpora:
            for name, m in info.items():
                cells = [((by.get(name, {}).get(corpus, {}).get(c) or {}).get(key) or {}).get("mean") for c in conds]
                if all(v is None for v in cells):
                    continue
                label_m = name + (" (oracle)" if m.get("is_oracle") else "") + (" **(ours)**" if m.get("kind") == "ours" else "")
                out.append(f"| {corpus} | {label_m} | " + " | ".join(_f(v, spec) for v in cells) + " |")
        out.append("")
    return out


def build(folders: list[Path], targets: str | None = None) -> str:
    head = ["# Results", "",
            "Generated by `python -m digit_denoise.compare.results` from `digit-denoise compare` reports; do not edit by hand.",
            ""]
    if targets:
        from .targets import targets_section

        head += targets_section([_load(f) for f in folders], targets)
    return "\n".join(head + [section(f) for f in folders]).rstrip() + "\n"


def _load(folder: Path) -> dict:
    path = folder / "summary.json"
    try:
        return json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError):
        raise UserError(f"{path}: not readable; pass folders written by 'digit-denoise compare'") from None


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(prog="python -m digit_denoise.compare.results", description=__doc__,
                                 formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("reports", nargs="+", help="folders written by 'digit-denoise compare'")
    ap.add_argument("-o", "--out", default="docs/results.md", help="markdown file to write (default docs/results.md)")
    ap.add_argument("--targets", default=None, metavar="METHOD",
                    help="add the targets table for this method (its name in the reports)")
    a = ap.parse_args(argv)
    try:
        text = build([Path(r) for r in a.reports], a.targets)
        out = Path(a.out)
        out.parent.mkdir(parents=True, exist_ok=True)
        with atomic_path(out) as tmp:
            tmp.write_text(text, encoding="utf-8")
    except UserError as e:
        print(f"error: {e}")
        return 2
    print(f"wrote {a.out}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
