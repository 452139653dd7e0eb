"""What an analysis result was computed from, so a stored result is reused, never recomputed.

An analysis reads only a study's finished runs: their metrics and their checkpoints. Its
result in ``analyses/<id>.json`` carries ``inputs``, the SHA-256 of

* the analysis's name and options,
* the losslab version that computed it,
* every run of the study with its status and, for a finished run, the SHA-256 of its
  ``metrics.jsonl`` and the hashes its checkpoint sidecars record (the weights' own SHA-256,
  checked when a run is verified, so reading them costs no pass over the weights).

``losslab run`` recomputes an analysis only when these differ (a run retrained, added or
failed, an option changed, another losslab); ``losslab report`` never computes and marks a
result whose inputs changed as stale.
"""

from __future__ import annotations

import hashlib
import json
from pathlib import Path
from typing import Any

from losslab.runs.readers import read_json

__all__ = ["analysis_inputs", "run_digests", "run_digest"]


def run_digest(run_dir: str | Path) -> str:
    """The SHA-256 of a run's record: its metrics file and its checkpoints' recorded hashes."""
    run_dir = Path(run_dir)
    h = hashlib.sha256()
    metrics = run_dir / "metrics.jsonl"
    h.update(metrics.read_bytes() if metrics.exists() else b"")
    for sidecar in sorted((run_dir / "checkpoints").glob("*.json")):
        recorded = read_json(sidecar, what="a checkpoint sidecar").get("sha256", "")
        h.update(f"\n{sidecar.name} {recorded}".encode())
    return h.hexdigest()


def run_digests(runs: list[dict[str, Any]]) -> list[list[str]]:
    """``[run_id, status, record digest]`` of each of a study's runs (rows with ``run_id``,
    ``status`` and ``run_dir``), in run order; only a finished run has a digest."""
    return sorted([str(r["run_id"]), str(r["status"]),
                   run_digest(r["run_dir"]) if r["status"] == "finished" else ""] for r in runs)


#: options that say where an analysis runs, not what it computes (a map spread over Ray
#: workers gives the same numbers): changing them does not make a stored result stale
EXECUTION_OPTIONS = ("backend", "workers", "address", "worker_threads")


def analysis_inputs(name: str, options: dict[str, Any], digests: list[list[str]]) -> str:
    """The digest of one analysis's inputs, given the study's :func:`run_digests`; the
    :data:`EXECUTION_OPTIONS` are left out."""
    from losslab import __version__

    options = {k: v for k, v in options.items() if k not in EXECUTION_OPTIONS}
    text = json.dumps({"analysis": name, "options": options, "losslab": __version__,
                       "runs": digests}, sort_keys=True, default=str)
    return hashlib.sha256(text.encode()).hexdigest()
