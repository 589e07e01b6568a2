"""A long importance-weighted score keeps its heap flat (issue 32).

The old `iw_log_likelihood` kept two 1-element tensors per image (and a list of columns per
image) until the split ended; they landed between the multi-MB activations freed every pass
and, with lvae.allocator's 512 MB trim threshold, the heap crept upward. Here a small ladder is
scored over 300 images, two threads, in a fresh process (the heap of this one holds every
earlier test's leftovers), and the heap is read after every pass. Measured on the 2-core
Intel Xeon (AMX) of docs/tests.md, with two trainings beside it, from the first tenth of the
passes to the peak: the old code +6.0 MB (163 -> 169) and +47.9 MB (166 -> 214) in two runs,
the buffered one +0.0 MB (163 -> 163).
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from lvae.allocator import heap_bytes

REPO = Path(__file__).resolve().parents[1]
GROWTH_MB = 4.0  # allowed rise of the heap from the first tenth of the passes to the peak


def heap_samples(images: int = 300, k: int = 1000, chunk: int = 1024, width: int = 256, threads: int = 2) -> dict:
    """Score a small ladder on random binary images; the heap (MB) after every pass, and the estimate."""
    import torch

    import lvae.evaluation as evaluation
    from lvae.allocator import keep_freed_memory
    from lvae.config import LayerSpec, ModelConfig
    from lvae.model import build_model

    torch.set_num_threads(threads)
    torch.manual_seed(0)
    config = ModelConfig([LayerSpec("dense", (width,), 8), LayerSpec("dense", (width // 2,), 4)], likelihood="bernoulli", batch_norm=True)
    model = build_model("lvae", config).eval()
    x = torch.rand(images, 1, 28, 28).bernoulli()
    keep_freed_memory()
    samples, inner = [], evaluation.importance_log_weights

    def probe(*args, **kwargs):
        out = inner(*args, **kwargs)
        samples.append(heap_bytes()[0] / 2**20)
        return out

    evaluation.importance_log_weights = probe
    iw = evaluation.iw_log_likelihood(model, x, k, "bernoulli", chunk=chunk)
    return {"heap_mb": samples, "nll": iw.nll}


def growth(samples: list[float]) -> float:
    """The heap's rise from the end of the first fifth of the passes (allocator warmed up: its first steps are one-off
    arenas, not growth) to its peak."""
    return max(samples) - samples[len(samples) // 5]


@pytest.mark.slow
@pytest.mark.skipif(heap_bytes() is None, reason="needs glibc's mallinfo2 to read the heap")
def test_the_heap_stays_flat_over_a_long_score():
    code = "import json, sys; sys.path.insert(0, 'tests'); from test_iw_memory import heap_samples; print(json.dumps(heap_samples()))"
    done = subprocess.run([sys.executable, "-c", code], cwd=REPO, capture_output=True, text=True, timeout=600,
                          env={**os.environ, "OMP_NUM_THREADS": "2"})
    assert done.returncode == 0, done.stderr
    result = json.loads(done.stdout)
    heap = result["heap_mb"]
    assert len(heap) == 300  # one pass per image: K = 1000 rows fit a chunk of 1024
    assert growth(heap) <= GROWTH_MB, f"heap rose {growth(heap):.1f} MB over the score: {heap[::30]}"
