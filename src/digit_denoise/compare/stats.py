"""Statistics of a comparison: per-group mean / median / 95 % CI over the clips valid for every method.

:func:`summarize` compares methods on their **common support**: for each metric, only clips whose
value is finite for *every* method enter any method's mean, so one method failing on hard clips
cannot flatter its mean. Per-method failure counts are reported alongside. Pure functions over
per-clip rows (dicts); the metric values themselves come from :mod:`..metrics`.
"""

from __future__ import annotations

import math
from typing import Any, Hashable, Iterable, Sequence

import numpy as np

from ..metrics import SUMMARY_METRICS

# --------------------------------------------------------------------------------------------
# Summaries (numpy only; rows are dicts)
# --------------------------------------------------------------------------------------------

def _finite(v: Any) -> bool:
    try:
        return v is not None and math.isfinite(float(v))
    except (TypeError, ValueError):
        return False


def _clip_id(row: dict, id_key: str | Sequence[str]) -> Hashable:
    if isinstance(id_key, str):
        return row[id_key]
    return tuple(row[k] for k in id_key)


def valid_ids_for_all(rows: Iterable[dict], methods: Iterable[Hashable] | None, metric: str, *,
                      id_key: str | Sequence[str] = "key", method_key: str = "method") -> set:
    """Clip ids whose ``metric`` is finite for **every** method in ``methods``.

    A clip missing for some method, or nan/None for it (in any of its rows), is excluded.
    ``methods=None`` means every method present in ``rows``. ``id_key`` may be a tuple of
    fields (e.g. ``("key", "snr")``) when the same clip appears under several conditions.
    """
    rows = list(rows)
    methods = ({r[method_key] for r in rows} if methods is None else set(methods))
    ok: dict[Hashable, dict[Hashable, bool]] = {}
    for r in rows:
        m = r[method_key]
        if m not in methods:
            continue
        per = ok.setdefault(_clip_id(r, id_key), {})
        per[m] = per.get(m, True) and _finite(r.get(metric))
    return {cid for cid, per in ok.items()
            if len(per) == len(methods) and all(per.values())}


def valid_mask_for_all(rows: Sequence[dict], methods: Iterable[Hashable] | None, metric: str, *,
                       id_key: str | Sequence[str] = "key", method_key: str = "method") -> np.ndarray:
    """Boolean mask over ``rows``: True where the row's clip is valid for every method.

    See :func:`valid_ids_for_all` (which returns the clip ids themselves).
    """
    rows = list(rows)
    ids = valid_ids_for_all(rows, methods, metric, id_key=id_key, method_key=method_key)
    return np.array([_clip_id(r, id_key) in ids for r in rows], dtype=bool)


def summarize(rows: Sequence[dict], group_by: Sequence[str] = ("method",),
              metrics: Sequence[str] = SUMMARY_METRICS, *, id_key: str = "key",
              method_key: str = "method", common_support: bool = True) -> list[dict[str, Any]]:
    """Per group and metric: mean, median, 95% CI, n, n_failed.

    Returns one flat dict per (group, metric), groups in first-seen order::

        {**group fields, "metric", "mean", "median", "ci95_low", "ci95_high", "ci95_half",
         "n", "n_failed", "n_rows"}

    * ``n_failed``: this group's rows where the metric is nan/missing (its own failures).
    * Common support (default, when ``method_key`` is in ``group_by``): per metric, only clips
      finite for **every** method enter the statistics of every method; clip identity is
      ``id_key`` plus the other ``group_by`` fields (so an SNR column groups separately).
      ``n`` is the number of values used. Without common support, ``n`` = own finite values.
    * CI: normal approximation ``mean +- 1.96 * sd / sqrt(n)`` (sd with ddof=1); nan if n < 2.
    """
    rows = list(rows)
    group_by = tuple(group_by)
    groups: dict[tuple, list[dict]] = {}
    for r in rows:
        groups.setdefault(tuple(r.get(g) for g in group_by), []).append(r)

    use_support = common_support and method_key in group_by
    support: dict[str, set] = {}
    cid_fields: tuple[str, ...] = (id_key,) + tuple(g for g in group_by if g != method_key)
    if use_support:
        for metric in metrics:
            support[metric] = valid_ids_for_all(rows, None, metric, id_key=cid_fields,
                                                method_key=method_key)

    out: list[dict[str, Any]] = []
    for gvals, grows in groups.items():
        for metric in metrics:
            n_failed = sum(not _finite(r.get(metric)) for r in grows)
            if use_support:
                vals = [float(r[metric]) for r in grows
                        if _clip_id(r, cid_fields) in support[metric]]
            else:
                vals = [float(r[metric]) for r in grows if _finite(r.get(metric))]
            x = np.asarray(vals, dtype=np.float64)
            n = int(x.size)
            mean = float(x.mean()) if n else float("nan")
            median = float(np.median(x)) if n else float("nan")
            half = float(1.96 * x.std(ddof=1) / math.sqrt(n)) if n >= 2 else float("nan")
            row = dict(zip(group_by, gvals))
            row.update(metric=metric, mean=mean, median=median, ci95_low=mean - half,
                       ci95_high=mean + half, ci95_half=half, n=n, n_failed=n_failed,
                       n_rows=len(grows))
            out.append(row)
    return out
