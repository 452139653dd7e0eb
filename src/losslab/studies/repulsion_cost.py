"""The study analysis ``repulsion_cost``: epoch time against the number of active checkpoints.

The thesis measured +21 s on a 68 s epoch per checkpoint (+31%) for its penalty. Here every
epoch of every finished run is grouped by how many repulsion checkpoints were active in it
(``active_checkpoints``, 0 for runs without repulsion); the first epoch of each run is left
out (warm-up). Per variant: the median epoch time at each count, and the slope of a least-squares
line through the epochs, as seconds and as a share of the 0-checkpoint time per checkpoint.
"""

from __future__ import annotations

from typing import Any

import numpy as np

from losslab.studies.analyses import register_analysis
from losslab.studies.records import StudyRecords

__all__ = ["repulsion_cost"]


@register_analysis("repulsion_cost")
def repulsion_cost(records: StudyRecords, *, skip_first: int = 1) -> dict[str, Any]:
    """Epoch time against the number of active repulsion checkpoints, per variant."""
    results = records.results
    finished = set(records.runs.loc[records.runs["status"] == "finished", "run_id"])
    rows = results[results["run_id"].isin(finished) & (results["epoch"] > skip_first)].copy()
    if rows.empty:
        raise ValueError("repulsion_cost: no finished epochs to time")
    if "active_checkpoints" not in rows:
        rows["active_checkpoints"] = 0
    rows["active_checkpoints"] = rows["active_checkpoints"].fillna(0).astype(int)
    base_time = float(rows.loc[rows["active_checkpoints"] == 0, "epoch_time"].median())
    variants = []
    for variant, group in rows.groupby("variant", sort=False):
        by_count = group.groupby("active_checkpoints")["epoch_time"]
        counts = sorted(by_count.groups)
        entry: dict[str, Any] = {"variant": variant, "checkpoints": counts,
                                 "median_epoch_time": [float(by_count.get_group(k).median())
                                                       for k in counts],
                                 "epochs": [int(by_count.get_group(k).size) for k in counts]}
        if len(counts) > 1:
            slope = float(np.polyfit(group["active_checkpoints"], group["epoch_time"], 1)[0])
            entry["seconds_per_checkpoint"] = slope
            entry["share_per_checkpoint"] = slope / base_time if base_time > 0 else None
        variants.append(entry)
    return {"baseline_epoch_time": base_time, "variants": variants,
            "thesis": {"seconds_per_checkpoint": 21.0, "epoch_time": 68.0,
                       "share_per_checkpoint": 21.0 / 68.0}}
