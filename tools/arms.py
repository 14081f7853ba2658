"""Learning curves of training runs compared at equal wall time (an ablation's arms, or long runs):
``python -m tools.results ... --arms docs/reports/history-abl-*.json``.

``python -m tools.arms RUN [RUN ...] --keep docs/reports`` keeps what the page needs of each run folder (its
recipe, model, parameters, threads and every validation record: step, minutes, samples/s, validation
loss) as ``history-NAME.json``, small enough to commit, so the page can be regenerated after ``runs/`` is
gone. The page's table has a row per run (its final validation SI-SDR and, where a compare report holds
the run, its 16-condition numbers); the figure draws validation SI-SDR against training minutes.
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

from digit_denoise.audio import atomic_path
from digit_denoise.errors import UserError
from digit_denoise.figures import subplots
from digit_denoise.training.config import recipe_description
from tools.targets import _f, _find, _mean

CONDITIONS = (("white −8", "white@-8dB", "si_sdr"), ("pink −8", "pink@-8dB", "si_sdr"),
              ("babble −8", "babble@-8dB", "si_sdr"), ("Δ unseen −8", "noise16k:unseen@-8dB", "si_sdr_imp"))


def keep_history(run: Path, kept_dir: Path) -> Path:
    """``kept_dir/history-NAME.json`` of a run folder (NAME: the folder's name)."""
    try:
        config = json.loads((run / "config.json").read_text(encoding="utf-8"))
        records = [json.loads(x) for x in (run / "history.jsonl").read_text(encoding="utf-8").splitlines() if x.strip()]
    except (OSError, ValueError):
        raise UserError(f"{run}: not a training run folder (config.json and history.jsonl)") from None
    summary = json.loads((run / "summary.json").read_text(encoding="utf-8")) if (run / "summary.json").is_file() else {}
    recipe = config.get("recipe") or ""
    kept = {"name": run.name, "recipe": recipe,
            "description": recipe_description(recipe) if recipe and Path(recipe).is_file() else "",
            "model": config.get("model"), "model_config": config.get("model_config"), "loss": config.get("loss"),
            "threads": config.get("threads"), "batch_size": config.get("batch_size"),
            "no_harm": config.get("no_harm") or 0, "no_regress": config.get("no_regress") or 0,
            "parameters": summary.get("parameters"),
            "records": [{k: r.get(k) for k in ("step", "elapsed_s", "samples_per_s", "val_loss", "train_loss", "lr")}
                        for r in records]}
    out = kept_dir / f"history-{run.name}.json"
    kept_dir.mkdir(parents=True, exist_ok=True)
    with atomic_path(out) as tmp:
        tmp.write_text(json.dumps(kept, separators=(",", ":")) + "\n", encoding="utf-8")
    return out


def load_history(path: Path) -> dict:
    try:
        return json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError):
        raise UserError(f"{path}: not readable; make it with python -m tools.arms RUN --keep DIR") from None


def plain_sisdr(h: dict) -> bool:
    """−(validation loss) is the validation SI-SDR: the SI-SDR loss with no guard term added."""
    return h.get("loss") == "sisdr" and not h.get("no_harm") and not h.get("no_regress")


def arms_figure(histories: list[dict], path: Path) -> None:
    """Validation SI-SDR (−loss, dB) against training minutes, one line per run."""
    fig, ax = subplots(figsize=(9, 4.6), dpi=100)
    for h in histories:
        recs = [r for r in h["records"] if r.get("val_loss") is not None]
        if h.get("loss") != "sisdr":  # another loss: its value is no SI-SDR
            continue
        guarded = not plain_sisdr(h)  # SI-SDR minus the guard's penalties: a lower bound, dashed
        ax.plot([r["elapsed_s"] / 60 for r in recs], [-r["val_loss"] for r in recs], marker=".",
                linestyle="--" if guarded else "-", label=h["name"] + (" (SI-SDR − guard terms)" if guarded else ""))
    ax.set_xlabel("training minutes")
    ax.set_ylabel("validation SI-SDR (dB)")
    ax.grid(alpha=0.3)
    ax.legend(fontsize=8, ncol=2)
    fig.tight_layout()
    with atomic_path(path) as tmp:
        fig.savefig(tmp, format="png")


def arms_section(histories: list[dict], summaries: list[dict], figure: str | None = None,
                 title: str = "Ablation at equal wall time") -> list[str]:
    """The table (a row per run) and, if drawn, the figure's link."""
    out = [f"## {title}", "",
           "Each run from its recipe file, one CPU thread unless said; the validation SI-SDR is −(the validation "
           "loss) on fixed validation mixtures (speakers held out of training) made with the run's own noise kinds, so "
           "runs of another data mix or another loss are compared on the test columns only (a guarded loss, with "
           "its no-harm / no-regress terms, is no SI-SDR: its column is empty, its curve dashed); the test columns come "
           "from the compare report that holds the run (25 clips × 4 corpora, unseen speakers; mean of the 16 "
           "conditions and SI-SDR at −8 dB).", ""]
    if figure:
        out += [f"![validation SI-SDR against training minutes]({figure})", ""]
    out += ["| run | what | parameters | threads | steps | minutes | samples/s | val SI-SDR | test mean | "
            + " | ".join(c[0] for c in CONDITIONS) + " |",
            "|---|---|---:|---:|---:|---:|---:|---:|---:|" + "---:|" * len(CONDITIONS)]
    personalised = False
    for h in histories:
        recs = [r for r in h["records"] if r.get("val_loss") is not None]
        last = recs[-1] if recs else {}
        # −(validation loss) is the validation SI-SDR only for the plain SI-SDR loss
        best = max((-r["val_loss"] for r in recs), default=None) if plain_sisdr(h) else None
        speed = sum(r.get("samples_per_s") or 0 for r in recs) / max(len(recs), 1)
        s = _find(summaries, h["name"])
        personalised |= bool(s and "enroll" in s)
        conds = [c["name"] for c in s["conditions"]] if s else []
        mean = (sum(_mean(s, h["name"], None, c, "si_sdr") or 0 for c in conds) / len(conds)) if conds else None
        cells = [_f(_mean(s, h["name"], None, c, m), ".2f") if s else "—" for _, c, m in CONDITIONS]
        what = h.get("description", "").split(": ", 1)[-1] or h.get("recipe", "")
        out.append(f"| {h['name']} | {what} | {h.get('parameters') or '—'} | {h.get('threads') or '—'} | "
                   f"{last.get('step', '—')} | {_f((last.get('elapsed_s') or 0) / 60, '.0f')} | {speed:.1f} | "
                   f"{_f(best, '.2f')} | {_f(mean, '.2f')}{' ‡' if s and 'enroll' in s else ''} | "
                   + " | ".join(cells) + " |")
    if personalised:
        out += ["", "‡ from a personalised report (`compare --enroll`): its own conditions, each clip denoised with "
                "a profile of its speaker; see that report's section."]
    return out + [""]


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(prog="python -m tools.arms", description=__doc__,
                                 formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("runs", nargs="+", help="run folders")
    ap.add_argument("--keep", required=True, metavar="DIR", help="write DIR/history-NAME.json for each")
    a = ap.parse_args(argv)
    try:
        for r in a.runs:
            print(f"kept {keep_history(Path(r), Path(a.keep))}")
    except UserError as e:
        print(f"error: {e}")
        return 2
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
