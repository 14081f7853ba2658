"""The quality targets of the project (``tools/targets.toml``) against compare reports: met or not, and by how much.

Every target is read at −8 dB input SNR on the test split (unseen speakers): pooled over corpora
and per corpus. "Ahead of the best peer" compares the model with every other non-oracle method of
the reports (our earlier models included, the noisy input excluded) in every condition.
"""

from __future__ import annotations

import math
from pathlib import Path

import tomllib

from digit_denoise.audio import atomic_path
from digit_denoise.errors import UserError
from digit_denoise.figures import subplots

TARGETS_FILE = Path(__file__).resolve().with_name("targets.toml")


def load_targets(path: Path = TARGETS_FILE) -> tuple[tuple[str, str, str, float], ...]:
    """(what, condition, metric, threshold) of every ``[[target]]`` in the targets file."""
    data = tomllib.loads(path.read_text(encoding="utf-8"))
    return tuple((t["what"], t["condition"], t["metric"], float(t["at_least"])) for t in data.get("target", []))


TARGETS = load_targets()


def _f(v, spec: str) -> str:
    """A number formatted, or "—" where there is none."""
    return format(v, spec) if isinstance(v, (int, float)) and math.isfinite(v) else "—"


def _mean(block: dict, method: str, corpus: str | None, cond: str, metric: str) -> float | None:
    res = block["results"] if corpus is None else block.get("results_by_corpus", {})
    r = res.get(method, {})
    r = r.get(cond) if corpus is None else r.get(corpus, {}).get(cond)
    v = ((r or {}).get(metric) or {}).get("mean")
    return v if isinstance(v, (int, float)) and math.isfinite(v) else None


def _find(summaries: list[dict], method: str) -> dict | None:
    return next((s for s in summaries if any(m["name"] == method for m in s["methods"])), None)


def best_peer_gaps(summaries: list[dict], method: str, corpus: str | None,
                   only: str | None = None) -> list[tuple[str, float, str]]:
    """(condition, our SI-SDR − the best other method's, that method) for every condition; with ``only``,
    against that one method."""
    ours = _find(summaries, method)
    out = []
    for cond in [c["name"] for c in ours["conditions"]]:
        mine = _mean(ours, method, corpus, cond, "si_sdr")
        rivals = [(_mean(s, m["name"], corpus, cond, "si_sdr"), m["name"]) for s in summaries for m in s["methods"]
                  if m["name"] not in (method, "noisy") and not m.get("is_oracle") and only in (None, m["name"])]
        rivals = [r for r in rivals if r[0] is not None]
        if mine is not None and rivals:
            best = max(rivals)
            out.append((cond, mine - best[0], best[1]))
    return out


def _ahead_cells(summaries: list[dict], method: str, cols: list, only: str | None = None) -> list[str]:
    cells = []
    for c in cols:
        g = best_peer_gaps(summaries, method, c, only)
        if not g:
            cells.append("—")
            continue
        worst = min(g, key=lambda x: x[1])
        behind = sum(1 for _, d, _ in g if d < 0)
        cells.append(f"{len(g) - behind}/{len(g)} ✅" if behind == 0 else
                     f"{len(g) - behind}/{len(g)} ❌ (worst {worst[0]}: {worst[1]:+.2f} dB vs {worst[2]})")
    return cells


def targets_section(summaries: list[dict], method: str, versus: str | None = None) -> list[str]:
    """Markdown: every target for ``method``, pooled and per corpus, then the best-peer margins (and,
    with ``versus``, the margins over that one method: the default it would replace)."""
    ours = _find(summaries, method)
    if ours is None:
        return ["## Targets", "", f"(no report holds a method called {method!r})", ""]
    corpora = list(ours.get("corpora") or {})
    cols = [None, *corpora] if len(corpora) > 1 else [None]
    head = ["all clips" if c is None else c for c in cols]
    out = [f"## Targets: `{method}` (test split, unseen speakers)", "",
           f"Model `{method}`; each cell is the value, ✅ met or ❌ missed by the amount in brackets.", "",
           "| target | " + " | ".join(head) + " |", "|---|" + "---|" * len(cols)]
    for what, cond, metric, threshold in TARGETS:
        cells = []
        for c in cols:
            v = _mean(ours, method, c, cond, metric)
            if v is None:
                cells.append("—")
            else:
                spec = ".3f" if metric == "stoi" else ".2f"
                cells.append(f"{v:{spec}} ✅" if v >= threshold else f"{v:{spec}} ❌ ({v - threshold:+{spec}})")
        out.append(f"| {what} | " + " | ".join(cells) + " |")
    out.append("| ahead of the best other method in every condition (SI-SDR) | "
               + " | ".join(_ahead_cells(summaries, method, cols)) + " |")
    if versus and versus != method and _find(summaries, versus) is not None:
        out.append(f"| ahead of `{versus}` in every condition (SI-SDR) | "
                   + " | ".join(_ahead_cells(summaries, method, cols, versus)) + " |")
    out.append("")
    return out


# the ablation table's columns: (header, condition or None for the mean of every condition, metric, format)
ABLATION_COLUMNS = (
    ("mean SI-SDR", None, "si_sdr", ".2f"),
    ("white −8", "white@-8dB", "si_sdr", ".2f"),
    ("pink −8", "pink@-8dB", "si_sdr", ".2f"),
    ("babble −8", "babble@-8dB", "si_sdr", ".2f"),
    ("Δ unseen noise −8", "noise16k:unseen@-8dB", "si_sdr_imp", "+.2f"),
    ("PESQ white −8", "white@-8dB", "pesq", ".2f"),
    ("STOI white −8", "white@-8dB", "stoi", ".3f"),
)


def _cell(s: dict, method: str, cond: str | None, metric: str) -> float | None:
    if cond is not None:
        return _mean(s, method, None, cond, metric)
    vals = [_mean(s, method, None, c["name"], metric) for c in s["conditions"]]
    return sum(vals) / len(vals) if vals and None not in vals else None


def ablation_section(summaries: list[dict]) -> list[str]:
    """Markdown: every method of the reports in one table (each from the first report that holds it),
    pooled over corpora: its training (start, steps, minutes), cost (RTF) and the headline numbers;
    the oracle last, as the ceiling of a magnitude mask, and the targets as the last row."""
    seen, rows = set(), []
    for s in summaries:
        for m in s["methods"]:
            if m["name"] not in seen:
                seen.add(m["name"])
                rows.append((s, m))
    rows.sort(key=lambda sm: bool(sm[1].get("is_oracle")))  # stable: report order, the oracle at the end
    conds = {c["name"] for s in summaries for c in s["conditions"]}
    heads = [h for h, *_ in ABLATION_COLUMNS]
    out = ["## Ablation: every model on the test set", "",
           "Pooled over the corpora of each report (test split, unseen speakers); SI-SDR in dB, mean SI-SDR over "
           f"the report's {len(conds)} conditions (noise kind × SNR). Each model's training reads "
           "\"starts from\" → steps → minutes on this CPU (one thread); RTF on one thread. The oracle knows "
           "the clean speech: its ideal ratio mask bounds what a magnitude mask can reach. \"default\" is the "
           "model shipped when that run started (README, \"Train\", lists the stages in order).", "",
           "| model | starts from | steps | minutes | RTF | " + " | ".join(heads) + " |",
           "|---|---|---:|---:|---:|" + "---:|" * len(heads)]
    for s, m in rows:
        t = m.get("training") or {}
        mins = t["train_s"] / 60 if isinstance(t.get("train_s"), (int, float)) else None
        cells = [_f(_cell(s, m["name"], c, k), spec) for _, c, k, spec in ABLATION_COLUMNS]
        label = m["name"] + (" (oracle)" if m.get("is_oracle") else "")
        out.append(f"| {label} | {t.get('init') or '—'} | {_f(t.get('steps'), 'd')} | {_f(mins, '.0f')} | "
                   f"{_f((s.get('rtf') or {}).get(m['name']), '.4f')} | " + " | ".join(cells) + " |")
    goal = {(cond, metric): th for _, cond, metric, th in TARGETS}
    out.append("| target | | | | ≤ 0.02 | "
               + " | ".join(_f(goal.get((c, k)), spec) if (c, k) in goal else "—"
                            for _, c, k, spec in ABLATION_COLUMNS) + " |")
    out.append("")
    return out


CHAIN_KINDS = (  # (label, condition, metric) drawn along a chain of fine-tuning stages, all at −8 dB
    ("white", "white@-8dB", "si_sdr"),
    ("pink", "pink@-8dB", "si_sdr"),
    ("babble", "babble@-8dB", "si_sdr"),
    ("unseen real noise", "noise16k:unseen@-8dB", "si_sdr"),
)


def chain_rows(summaries: list[dict], chain: list[str]) -> list[dict]:
    """One row per stage of ``chain`` (methods in training order, each fine-tuned from the one before):
    its steps, the running totals of steps and training minutes, and its SI-SDR at −8 dB per noise kind.
    A stage without training records (a packaged start) counts as step 0."""
    rows, steps, secs = [], 0, 0.0
    for name in chain:
        s = _find(summaries, name)
        if s is None:
            raise UserError(f"--chain: no report holds the method '{name}'; pass the report that measured it")
        t = next(m for m in s["methods"] if m["name"] == name).get("training") or {}
        if rows:  # the first stage is where the chain starts: its own training is not part of it
            steps += int(t.get("steps") or 0)
            secs += float(t.get("train_s") or 0.0)
        rows.append({"name": name, "steps": t.get("steps") if rows else None, "total_steps": steps,
                     "total_min": secs / 60, "mean": _cell(s, name, None, "si_sdr"),
                     **{label: _mean(s, name, None, cond, metric) for label, cond, metric in CHAIN_KINDS}})
    return rows


def chain_figure(rows: list[dict], path) -> None:
    """SI-SDR at −8 dB per noise kind against fine-tuning steps, the targets dashed: a PNG at ``path``."""

    goal = {(cond, metric): th for _, cond, metric, th in TARGETS}
    fig, ax = subplots(figsize=(9, 4.2), dpi=100)
    x = [r["total_steps"] for r in rows]
    for i, (label, cond, metric) in enumerate(CHAIN_KINDS):
        color = f"C{i}"
        ax.plot(x, [r[label] if r[label] is not None else float("nan") for r in rows], "o-", color=color, label=label)
        if (cond, metric) in goal:
            ax.axhline(goal[cond, metric], color=color, ls="--", lw=0.8)
    ax.axhline(-8.0, color="0.5", ls=":", lw=0.8, label="noisy input")
    for r in rows:
        ax.annotate(r["name"], (r["total_steps"], r["white"] or 0), textcoords="offset points", xytext=(0, 6),
                    ha="center", fontsize=7, rotation=30)
    ax.set_xlabel("fine-tuning steps from " + rows[0]["name"])
    ax.set_ylabel("SI-SDR at −8 dB input (dB), test split")
    ax.set_title("Quality along the training chain (dashed: targets)")
    ax.legend(fontsize=8, loc="upper left", bbox_to_anchor=(1.01, 1.0))
    ax.grid(alpha=0.3)
    fig.tight_layout()
    with atomic_path(path) as tmp:
        fig.savefig(tmp, format="png")


def chain_section(rows: list[dict], figure: str | None = None) -> list[str]:
    """Markdown: the learning curve of a chain of fine-tuning stages on the test set (``chain_rows``'s
    table, and the figure ``figure`` — a path relative to the page — when given)."""
    labels = [label for label, *_ in CHAIN_KINDS]
    out = [f"## Learning curve: the `{rows[0]['name']}` chain", "",
           "Each stage is fine-tuned from the one before (README, \"Train\"); steps and minutes add up across "
           "stages and sessions. SI-SDR in dB at −8 dB input on the test split, pooled over corpora; the "
           "unseen-noise column is SI-SDR, not its improvement.", ""]
    if figure:
        out += [f"![SI-SDR along the chain]({figure})", ""]
    out += ["| stage | steps | total steps | total minutes | mean SI-SDR | " + " | ".join(labels) + " |",
            "|---|---:|---:|---:|---:|" + "---:|" * len(labels)]
    for r in rows:
        out.append(f"| {r['name']} | {_f(r['steps'], 'd')} | {r['total_steps']} | {r['total_min']:.0f} | "
                   f"{_f(r['mean'], '.2f')} | " + " | ".join(_f(r[k], '.2f') for k in labels) + " |")
    out.append("")
    return out
