"""Seeded fuzzing of the checkpoint loader: any file that is not a good checkpoint gives a
CheckpointError, never another exception, and never different numbers loaded in silence.

Each case is one file: random bytes behind the headers the loaders look for, truncations
and splices of a real checkpoint, single and multiple bit flips. A real checkpoint comes
from a one-layer model trained for one epoch, so it is small and each load takes
milliseconds."""

from __future__ import annotations

import pickle
import random
import shutil
import zipfile
from pathlib import Path
from typing import Any, Callable

import pytest
import torch

from lvae import checkpoint as ckpt
from lvae import results
from lvae.config import LayerSpec, ModelConfig, seed_config
from lvae.data import synthetic_split
from lvae.training import Trainer

SEED = 9
HEADERS = [b"", b"PK\x03\x04", b"\x80\x02", pickle.dumps(torch.serialization.MAGIC_NUMBER, protocol=2)]  # none, zip, pickle, legacy torch
pytestmark = pytest.mark.slow  # hundreds of damaged checkpoints: `make test-fast` leaves them out


def tiny_trainer(run: Path, epochs: int) -> Trainer:
    """A one-rung model on 32 synthetic images, 2 iterations an epoch: a 0.2 MB checkpoint."""
    cfg = seed_config()
    cfg.model = ModelConfig([LayerSpec("dense", (8,), 2)], likelihood="bernoulli")
    cfg.train.batch_size, cfg.train.epochs = 16, epochs
    return Trainer(cfg, run, synthetic_split(32, 0), synthetic_split(16, 1), progress=False)


@pytest.fixture(scope="module")
def run(tmp_path_factory) -> Path:
    """A run folder after one epoch."""
    torch.set_num_threads(1)
    run = tmp_path_factory.mktemp("fuzz") / "run"
    tiny_trainer(run, epochs=1).fit()
    return run


@pytest.fixture(scope="module")
def original(run) -> dict[str, Any]:
    """The checkpoint as written, digest included."""
    return torch.load(run / ckpt.LATEST, weights_only=True)


def without_digest(sd: dict[str, Any]) -> dict[str, Any]:
    return {k: v for k, v in sd.items() if k != "digest"}


def same(a: Any, b: Any) -> bool:
    """Equal structure, values and tensor bytes (an independent check of what the digest promises)."""
    if isinstance(a, dict):
        return isinstance(b, dict) and a.keys() == b.keys() and all(same(a[k], b[k]) for k in a)
    if isinstance(a, (list, tuple)):
        return isinstance(b, (list, tuple)) and len(a) == len(b) and all(map(same, a, b))
    if isinstance(a, torch.Tensor):
        return isinstance(b, torch.Tensor) and a.dtype == b.dtype and a.shape == b.shape and a.numpy().tobytes() == b.numpy().tobytes()
    return type(a) is type(b) and a == b


def flip_bits(data: bytes, positions: list[int], rng: random.Random) -> bytes:
    out = bytearray(data)
    for p in positions:
        out[p] ^= 1 << rng.randrange(8)
    return bytes(out)


def pickle_region(path: Path) -> range:
    """Byte offsets of the zip's local header and pickle record: where a flip changes structure, not numbers."""
    with zipfile.ZipFile(path) as z:
        info = next(i for i in z.infolist() if i.filename.endswith("data.pkl"))
    return range(info.header_offset, info.header_offset + 30 + len(info.filename) + 64 + info.file_size)


def corrupted_files(good: bytes, pkl: range, rng: random.Random) -> list[tuple[str, bytes]]:
    """(what, contents) for 520 bad or damaged files, all drawn from `rng`."""
    n = len(good)
    files = []
    for i in range(120):  # random bytes behind each header
        header = HEADERS[i % len(HEADERS)]
        files.append((f"random after {header[:4]!r}", header + rng.randbytes(rng.choice([0, 1, 7, 64, 512, 4096]))))
    for _ in range(100):  # truncations, and a real prefix spliced onto random bytes
        cut = rng.randrange(n)
        files.append((f"truncated at {cut}", good[:cut]))
        files.append((f"prefix {cut} + random", good[:cut] + rng.randbytes(rng.randrange(1, 2048))))
    for _ in range(100):  # single flips: half anywhere (mostly tensor data), half in the zip header and pickle
        p = rng.randrange(n) if rng.random() < 0.5 else rng.choice(pkl)
        files.append((f"bit flip at {p}", flip_bits(good, [p], rng)))
    for _ in range(100):  # 2 to 16 flips anywhere
        ps = [rng.randrange(n) for _ in range(rng.randint(2, 16))]
        files.append((f"bit flips at {ps}", flip_bits(good, ps, rng)))
    return files


def refused(load: Callable[[Path], Any], path: Path) -> Any:
    """What `load(path)` returned, or None where it raised CheckpointError; any other exception fails the test."""
    try:
        return load(path)
    except ckpt.CheckpointError as e:
        message = str(e)
        assert str(path) in message and "\n" not in message and "Traceback" not in message, message
        return None


def test_damaged_checkpoints_are_refused_or_load_unchanged(run, original, tmp_path):
    """Over 500 files: a CheckpointError, or (a flip in padding the loader never reads) the very same contents."""
    good = (run / ckpt.LATEST).read_bytes()
    files = corrupted_files(good, pickle_region(run / ckpt.LATEST), random.Random(SEED))
    assert len(files) >= 500
    path, loaded_unchanged = tmp_path / "checkpoint.pt", 0
    for what, contents in files:
        path.write_bytes(contents)
        got = refused(ckpt.load, path)
        assert got is None or same(got, without_digest(original)), f"{what}: loaded, but not what was saved"
        loaded_unchanged += got is not None
    assert loaded_unchanged < len(files) // 10  # nearly every damaged file is refused


def test_damaged_old_checkpoints_never_escape_the_loaders(run, original, tmp_path):
    """Files without a digest (written before it existed) cannot be checked for silent corruption,
    but damage must still end in a CheckpointError through every loader: run folders (evaluate,
    sample, figures), results/*.pt and --resume. The flips go where they change structure."""
    folder = tmp_path / "run"
    shutil.copytree(run, folder)
    trainer = tiny_trainer(folder, epochs=2)
    torch.save(without_digest(original), tmp_path / "old.pt")
    good = (tmp_path / "old.pt").read_bytes()
    rng = random.Random(SEED + 1)
    pkl = pickle_region(tmp_path / "old.pt")
    for _ in range(150):
        ps = [rng.choice(pkl) for _ in range(rng.randint(1, 3))]
        (folder / ckpt.LATEST).write_bytes(flip_bits(good, ps, rng))
        refused(ckpt.load_run, folder)
        refused(results.load_model, folder / ckpt.LATEST)
        refused(lambda _: trainer.resume(), folder / ckpt.LATEST)


def test_a_flipped_bit_in_the_weights_is_refused_as_corrupt(run, original, tmp_path):
    """The flip leaves a file that unpickles fine; only the digest can tell."""
    good = (run / ckpt.LATEST).read_bytes()
    weight = max(original["model"].values(), key=torch.Tensor.numel)  # (in the zip, stored as raw bytes)
    start = good.find(weight.numpy().tobytes())
    assert start > 0
    bad = tmp_path / "checkpoint.pt"
    bad.write_bytes(flip_bits(good, [start + weight.nbytes // 2], random.Random(SEED)))  # a byte in the middle of the tensor
    loaded = torch.load(bad, weights_only=True)  # it still unpickles
    assert not same(loaded["model"], original["model"])
    with pytest.raises(ckpt.CheckpointError, match=rf"^{bad}: corrupt: its tensors and values do not match the digest written with them"):
        ckpt.load(bad)


def test_the_digest_round_trips_and_old_checkpoints_still_load(run, original, tmp_path):
    loaded = ckpt.load(run / ckpt.LATEST)
    assert "digest" in original and same(loaded, without_digest(original))
    torch.save(loaded, tmp_path / "old.pt")  # no digest: nothing to check, loads as before
    assert same(ckpt.load(tmp_path / "old.pt"), loaded)
