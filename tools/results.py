"""Generate a results page (markdown) from ``compare`` reports: ``python -m tools.results``.

::

    python -m tools.results reports/fsdd-white reports/fsdd-grid -o docs/results.md

For every report folder (its ``summary.json``) the page lists, per condition, each method's mean
SI-SDR / PESQ / STOI (with ΔSI-SDR over the noisy input) and its real-time factor; for our own
models also the parameter count, training steps and training time read from the run folder the
report points at. Nothing is typed by hand: rerun the comparisons, rerun this, commit the page.
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

from digit_denoise.audio import atomic_path
from digit_denoise.compare.runinfo import run_info
from digit_denoise.errors import UserError
from tools.arms import arms_figure, arms_section, load_history
from tools.targets import _f, ablation_section, chain_figure, chain_rows, chain_section, targets_section


def section(folder: Path, s: dict) -> str:
    """The page's section for one report: ``s`` is its summary (``load_summary(folder)``)."""
    # what compare recorded of each model (newer reports), else what its files say now
    info = {m["name"]: {**m, **(m.get("training") or run_info(m.get("path")))} for m in s["methods"]}
    # only the test split is speaker-disjoint by construction; what else a run trained on is in its table row
    held_out = " (speakers held out of its train and val splits)" if s["split"] == "test" else ""
    out = [f"## {report_name(folder)}", "",
           f"`{s.get('command', '')}`", "",
           f"{s['n_clips']} clips of the `{s['split']}` split of "
           f"{' + '.join(f'`{Path(m).name}`' for m in s['manifest'].split(','))}{held_out}, "
           f"metrics at {s['sample_rate']} Hz; means over clips valid for "
           f"every method. RTF: {s.get('rtf_note', '')}.", ""]
    ours = [m for m in info.values() if m.get("kind") == "ours"]
    if ours:
        out += ["| model | preset | network | starts from | loss | training data | parameters | training steps | "
                "training time |", "|---|---|---|---|---|---|---:|---:|---:|"]
        for m in ours:
            t = m.get("train_s")
            out.append(f"| {m['name']} | {m.get('preset') or '—'} | {m.get('shape') or '—'} | {m.get('init') or '—'} | "
                       f"{m.get('loss') or '—'} | "
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


SEED_TARGET = 0.30  # the seed recipe's model: test MSE at least this much below the per-pixel-mean baseline


def _seed_extras(t: dict) -> str:
    """", starting from `seed1000`, fresh noise and voice every epoch" for a run that had them."""
    parts = [f"starting from `{t['init']}`"] if t.get("init") not in (None, "", "scratch") else []
    if t.get("fresh_noise"):
        parts.append(f"fresh {t['fresh_noise']} every epoch")
    return "".join(", " + p for p in parts)


def seed_eval_name(folder: Path) -> str:
    """``RUN/eval-test`` → ``RUN-eval-test``; a kept copy ``NAME.json`` → ``NAME``."""
    return folder.stem if folder.suffix == ".json" else f"{folder.resolve().parent.name}-{folder.resolve().name}"


def seed_section(evals: list[Path]) -> list[str]:
    """The seed recipe's own rows: ``digit-denoise evaluate`` reports (mel-image MSE on the seed
    representation) of seed-preset runs, beside the trivial baselines, with the ≥ 30 % target."""
    out = ["## The seed recipe: mel-image MSE on unseen speakers", "",
           "`digit-denoise evaluate RUN --split test`: the seed representation (48 kHz mel, dB, min-max, 112×112) "
           f"of the run's test split; target: the model's MSE at least {SEED_TARGET:.0%} below the per-pixel-mean "
           "baseline (the mean clean training image).", ""]
    for f in evals:
        s = load_summary(f)
        m, t = s.get("methods") or {}, s.get("training") or {}
        if "model" not in m or "per-pixel-mean" not in m:
            raise UserError(f"{f}: not a 'digit-denoise evaluate' summary (no model / per-pixel-mean MSE)")
        base = m["per-pixel-mean"]["mse"]
        by_speaker = s.get("per_speaker") or {}
        speakers = sorted(by_speaker.get("model") or {})  # one column per test speaker
        goal = base * (1 - SEED_TARGET)
        gain = 1 - m["model"]["mse"] / base
        verdict = "✅" if m["model"]["mse"] <= goal else f"❌ (missed by {goal - m['model']['mse']:+.5f}, {gain:.1%} below)"
        train_min = _f(t["train_s"] / 60, ".0f") if isinstance(t.get("train_s"), (int, float)) else "—"
        out += [f"### {seed_eval_name(f)}", "",
                f"{s.get('n_clips')} clips of the `{s.get('split')}` split of `{Path(str(s.get('manifest'))).name}`; "
                f"model `{s.get('model')}` ({_f(t.get('parameters'), ',')} parameters), best checkpoint at step "
                f"{s.get('step')} of {t.get('steps') or '—'} training steps ({train_min} min), preset "
                f"`{t.get('preset') or '—'}`{_seed_extras(t)}.", "",
                "| method | test MSE | vs per-pixel-mean | " + " | ".join(speakers) + " |",
                "|---|---:|---:|" + "---:|" * len(speakers)]
        for name, v in sorted(m.items(), key=lambda kv: kv[1]["mse"]):
            per = [_f(by_speaker.get(name, {}).get(k), ".5f") for k in speakers]
            out.append(f"| {name} | {v['mse']:.5f} | {v['mse'] / base - 1:+.1%} | " + " | ".join(per) + " |")
        out += ["", f"Target ≤ {goal:.5f} ({SEED_TARGET:.0%} below {base:.5f}): {verdict}", ""]
    return out


def build(folders: list[Path], targets: str | None = None, seed_evals: list[Path] = (),
          versus: str | None = None, chain: str | None = None, chain_figure_path: Path | None = None,
          arms: list[Path] = (), arms_figure_path: Path | None = None, long_runs: list[Path] = (),
          long_figure_path: Path | None = None) -> str:
    head = ["# Results", "",
            "Generated by `python -m tools.results` from `digit-denoise compare` and "
            "`digit-denoise evaluate` reports; do not edit by hand.", ""]
    summaries = [load_summary(f) for f in folders]
    if targets:
        for method in targets.split(","):
            head += targets_section(summaries, method.strip(), versus)
    blind = [s for s in summaries if "enroll" not in s]  # personalised reports: their own sections
    if len(blind) > 1:  # one report's own section already lists its methods side by side
        head += ablation_section(blind)
    for paths, fig, title in ((arms, arms_figure_path, "Ablation at equal wall time"),
                              (long_runs, long_figure_path, "Long runs")):
        if paths:
            histories = [load_history(p) for p in paths]
            if fig is not None:
                arms_figure(histories, fig)
            head += arms_section(histories, summaries, fig.name if fig is not None else None, title)
    if chain:
        rows = chain_rows(summaries, [c.strip() for c in chain.split(",") if c.strip()])
        if chain_figure_path is not None:
            chain_figure(rows, chain_figure_path)
        head += chain_section(rows, chain_figure_path.name if chain_figure_path is not None else None)
    if seed_evals:
        head += seed_section(list(seed_evals))
    return "\n".join(head + [section(f, s) for f, s in zip(folders, summaries)]).rstrip() + "\n"


def report_name(folder: Path) -> str:
    """A report's name: its folder's, or the stem of its kept copy (docs/reports/NAME.json)."""
    return folder.stem if folder.suffix == ".json" else folder.name


def load_summary(folder: Path) -> dict:
    """A report's summary: ``FOLDER/summary.json``, or a copy of it kept as ``NAME.json`` (docs/reports/)."""
    path = folder if folder.suffix == ".json" else folder / "summary.json"
    try:
        return json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError):
        raise UserError(f"{path}: not readable; pass folders written by 'digit-denoise compare'") from None


# what a results page, the targets table and the model card read of a summary; statistics keep mean and n
KEPT_KEYS = ("command", "versions", "manifest", "corpora", "split", "seed", "limit", "n_clips", "sample_rate",
             "elapsed_s", "methods", "skipped", "conditions", "metrics", "rtf", "rtf_note", "results",
             "results_by_corpus", "overall", "run", "model", "step", "training", "per_digit", "per_speaker",
             "per_gender", "enroll")


def _means(node):
    if isinstance(node, dict) and "mean" in node and "n" in node:  # full precision: the page rounds the same
        return {"mean": node["mean"], "n": node["n"]}
    if isinstance(node, dict):
        return {k: _means(v) for k, v in node.items()}
    return node


def keep(folder: Path, kept_dir: Path, name: str | None = None) -> Path:
    """Write ``kept_dir/NAME.json``: the part of a report's summary.json this page needs (means and counts),
    small enough to commit, so the page can be regenerated after ``reports/`` is gone."""
    s = load_summary(folder)
    slim = {k: (_means(s[k]) if k in ("results", "results_by_corpus", "overall") else s[k]) for k in KEPT_KEYS
            if k in s}
    out = kept_dir / f"{name or report_name(folder)}.json"
    kept_dir.mkdir(parents=True, exist_ok=True)
    with atomic_path(out) as tmp:
        tmp.write_text(json.dumps(slim, separators=(",", ":"), allow_nan=False) + "\n", encoding="utf-8")
    return out


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(prog="python -m tools.results", description=__doc__,
                                 formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("reports", nargs="*",
                    help="folders written by 'digit-denoise compare', or copies of their summary.json named NAME.json")
    ap.add_argument("-o", "--out", default="docs/results.md", help="markdown file to write (default docs/results.md)")
    ap.add_argument("--targets", default=None, metavar="METHOD",
                    help="add the targets table for this method (its name in the reports); a comma list for several")
    ap.add_argument("--versus", default=None, metavar="METHOD",
                    help="add to each targets table whether the method is ahead of this one (e.g. the current default) "
                         "in every condition")
    ap.add_argument("--chain", default=None, metavar="M1,M2,...",
                    help="add the learning curve of these methods, in training order (each fine-tuned from the one "
                         "before), with its figure OUT-chain.png beside the page")
    ap.add_argument("--arms", nargs="+", default=[], metavar="HISTORY",
                    help="add the ablation's table and learning curves (OUT-arms.png) from kept run histories "
                         "(python -m tools.arms RUN --keep docs/reports)")
    ap.add_argument("--long", nargs="+", default=[], metavar="HISTORY",
                    help="the same for the long runs (OUT-long.png)")
    ap.add_argument("--seed-eval", action="append", default=[], metavar="FOLDER",
                    help="add the seed recipe's rows from this 'digit-denoise evaluate' folder (RUN/eval-test) "
                         "or its kept copy NAME.json; repeatable")
    ap.add_argument("--keep", default=None, metavar="DIR",
                    help="also write each report's summary, means and counts only, to DIR/NAME.json (e.g. docs/reports)")
    a = ap.parse_args(argv)
    if not a.reports and not a.seed_eval:
        ap.error("nothing to write: pass compare report folders and/or --seed-eval FOLDER")
    try:
        if a.keep:
            for r in a.reports:
                print(f"kept {keep(Path(r), Path(a.keep))}")
            for r in a.seed_eval:
                print(f"kept {keep(Path(r), Path(a.keep), seed_eval_name(Path(r)))}")
        out = Path(a.out)
        out.parent.mkdir(parents=True, exist_ok=True)
        text = build([Path(r) for r in a.reports], a.targets, [Path(r) for r in a.seed_eval], a.versus, a.chain,
                     out.with_name(out.stem + "-chain.png"), [Path(p) for p in a.arms],
                     out.with_name(out.stem + "-arms.png"), [Path(p) for p in a.long], out.with_name(out.stem + "-long.png"))
        with atomic_path(out) as tmp:
            tmp.write_text(text, encoding="utf-8")
    except UserError as e:
        print(f"error: {e}")
        return 2
    print(f"wrote {a.out}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
