"""What a number in a file lvae wrote must be: a finite int or float, never true, null or a string.

Why: the docs and figures format numbers with `:.2f`, and Python formats True as 1.00, None as
"None" and NaN as "nan", so a damaged value would be printed as if it were a measurement. The
fields are named once here, by key, wherever they sit in a file (results/*.json, results/paper,
the ablations, the seed study, the benchmarks, the run summaries): a value under one of these
keys is a number or a list of numbers; under `NULLABLE` a number, a list of them, or null (an
epoch whose test pass was skipped). `read_json` applies it to every file it reads.
"""

from __future__ import annotations

import math
from pathlib import Path
from typing import Any

from lvae.errors import CheckpointError

NUMBERS = frozenset({
    # evaluate's result (results/NAME.json, results/paper/*.json, ablation and seed-study rows)
    "nll", "nll_stderr", "elbo", "recon", "iw_samples", "iw_chunk", "per_image_log_px", "per_image_elbo", "kl_per_layer",
    "kl_units", "latent_layers", "active_units", "latent_units", "images", "top_latent_kl_to_prior", "class_histogram",
    "class_kl_to_uniform", "fid_mnist", "prior_samples", "eval_seconds",
    # training and the runners' records
    "train_seconds", "seconds_per_epoch", "train_threads", "score_threads", "depth", "warmup_epochs", "cpu_core_hours",
    "budget_core_hours", "train_wall_minutes", "cpu_seconds", "wall_seconds", "nll_k1000", "nll_k1000_stderr",
    "nll_change", "nll_change_low", "nll_change_high", "stderr", "target_nll", "stage_score_iw_samples",
    "cpu_seconds_budget", "epochs_reached", "fid_train_vs_test", "likelihood_images",
    "nll_before", "nll_stderr_before", "explained_variance", "coords", "labels", "seed",
})
MAGNITUDE = 1e12  # no count, time or nats lvae writes comes near it; 1e308 would overflow the statistics made from it
NULLABLE = frozenset({"per_epoch", "test_elbo_per_epoch"})  # per-epoch lists: null where an epoch was not tested


# lists of lists (per unit and layer; per point; a run summary's active units per epoch); every other number list is flat
NESTED = frozenset({"kl_units", "coords", "active_units"})


def _bad_number(value: Any, nullable: bool, nested: bool) -> Any:
    """The first value in `value` (a number, a list of them, or for `nested`/`nullable` keys lists and records of lists)
    that is not a finite number; None if all are."""
    stack = [(value, 0)]
    while stack:
        v, level = stack.pop()
        if isinstance(v, list) and (level == 0 or nested or nullable):
            stack += [(item, level + 1) for item in v]
        elif isinstance(v, dict) and nullable:  # per-epoch records: {key: list}
            stack += [(item, level) for item in v.values()]
        elif isinstance(v, list):
            return "a list"
        elif isinstance(v, dict):
            return "an object"
        elif v is None and nullable:
            continue
        elif isinstance(v, bool) or not isinstance(v, (int, float)) or not math.isfinite(v) or abs(v) > MAGNITUDE:
            return v if v is not None else "null"
    return None


def checked(data: Any, path: Path, what: str) -> Any:
    """`data` itself if every value under a number's key is a number; else one CheckpointError naming the file and the key."""
    stack: list[tuple[str, Any]] = [("", data)]
    while stack:  # a stack, not recursion: a damaged file may nest deeper than Python's recursion limit
        where, node = stack.pop()
        items = node.items() if isinstance(node, dict) else enumerate(node) if isinstance(node, list) else ()
        for key, value in items:
            here = f"{where}.{key}" if isinstance(key, str) else f"{where}[{key}]"
            if isinstance(key, str) and (key in NUMBERS or key in NULLABLE):
                bad = _bad_number(value, key in NULLABLE, key in NESTED)
                if bad is not None:
                    shown = "true" if bad is True else "false" if bad is False else repr(bad)[:40]
                    raise CheckpointError(f"{path}: not {what} ({here.lstrip('.')} holds {shown}, not a number); "
                                          "restore it, or run the command that writes it again")
            elif isinstance(value, (dict, list)):
                stack.append((here, value))
    return data
