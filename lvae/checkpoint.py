"""Checkpoints: written atomically, loaded safely, checked against the run's config.

A checkpoint is a dict of tensors and plain Python values, so it loads with
`torch.load(weights_only=True)` (from its xz-decompressed bytes for a file written with
`compress=True`, as `lvae.weights` writes): a file from elsewhere cannot run code. It carries a
sha256 digest of those contents (`DIGEST`), checked on load: a bit flipped on disk or in
transfer inside a tensor still unpickles, and would otherwise give other numbers in
silence. Checkpoints written before the digest existed load unchecked.

Every write goes to a temporary file in the same folder, is fsynced, then renamed over
the target, so a crash, a SIGKILL or a full disk leaves either the old file or the new
one, never half of one. Failures become `CheckpointError`s that name the file; a full disk
becomes a `DiskFullError` that also says how much space the file needs and how much is free.
"""

from __future__ import annotations

import errno
import hashlib
import io
import lzma
import os
import pickle
import shutil
import tempfile
import zipfile
from pathlib import Path
from typing import Any, Callable

import torch

from lvae.runfiles import read_json, reading
from lvae.errors import CheckpointError, DiskFullError, first_line  # noqa: F401  (raised and read through here too)

CHECKPOINT_GLOB = "checkpoint-*.pt"
LATEST = "checkpoint.pt"
DIGEST = "digest"
XZ_MAGIC = b"\xfd7zXZ\x00"  # an xz stream's first bytes; torch.save's files start with a zip's "PK"


EXIT_DISK_FULL = 74  # sysexits' EX_IOERR: `python -m lvae` exits with it on a full disk
NO_SPACE = (errno.ENOSPC, errno.EDQUOT)


def _weights_only_reason(e: BaseException) -> str:
    """torch's weights_only refusal, less its advice to load with weights_only=False."""
    lines = [line.strip() for line in str(e).splitlines()[1:]]
    details = [line for line in lines if line and not line.startswith(("Please file an issue", "Check the documentation"))]
    return details[0][:200] if details else first_line(e)


class _Recorder:
    """A file's write(), counting bytes and keeping the OSError it raised.

    torch.save swallows the writer's OSError and raises "[enforce fail at inline_container.cc]
    unexpected pos" instead; the recorded error says what really happened (a full disk).
    With `sink=None` nothing is written: only counted (the size a failed write needed).
    """

    def __init__(self, sink: Any = None):
        self.sink, self.written, self.error = sink, 0, None

    def write(self, data: Any) -> int:
        try:
            n = self.sink.write(data) if self.sink is not None else len(memoryview(data))
        except OSError as e:
            self.error = self.error or e
            raise
        self.written += n
        return n

    def flush(self) -> None:
        if self.sink is not None:
            self.sink.flush()


def _size(n: int) -> str:
    for unit, scale in (("GB", 2**30), ("MB", 2**20), ("kB", 2**10)):
        if n >= scale / 8:
            return f"{n / scale:.1f} {unit}"
    return f"{n} bytes"


def disk_full(path: Path, needed: int) -> DiskFullError:
    """The one-line error for a write to `path` that ran out of space: what it needs, what is free."""
    try:
        free = _size(shutil.disk_usage(Path(path).parent).free)
    except OSError:
        free = "unknown"
    return DiskFullError(f"could not write {path}: no space left on device (the file needs {_size(needed)}; {free} free there)")


def write_atomic(path: Path, write: Callable[[Any], None]) -> None:
    """Call `write(f)` on a temporary file beside `path`, fsync, then rename it over `path`.

    `write` may be called a second time, on a sink that only counts, to size a write that
    ran out of space; it must write the same bytes each time.
    """
    path = Path(path)
    tmp, recorder = None, _Recorder()
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
        with os.fdopen(fd, "wb") as f:
            recorder.sink = f
            write(recorder)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    except Exception as e:
        cause = recorder.error or e
        if not isinstance(cause, OSError):
            raise
        if cause.errno in NO_SPACE:
            _discard(tmp)  # first, so the free space reported is what the next try will have
            write(counter := _Recorder())
            raise disk_full(path, counter.written) from None
        raise CheckpointError(f"could not write {path}: {cause.strerror or first_line(cause)}") from None
    finally:
        _discard(tmp)


def remove_stale_temporaries(folder: Path) -> list[Path]:
    """Delete what interrupted `write_atomic`s left in `folder` (`.NAME.XXXX.tmp`: a SIGKILL between the write and
    the rename leaves a whole checkpoint's worth), and say so; call it only while holding the folder's lock."""
    stale = sorted(p for p in Path(folder).glob(".*.tmp") if p.is_file())
    for p in stale:
        p.unlink(missing_ok=True)
    if stale:
        print(f"removed {len(stale)} stale temporary file(s) in {folder} left by an interrupted write: "
              f"{', '.join(p.name for p in stale)}", flush=True)
    return stale


def _discard(tmp: str | None) -> None:
    if tmp is not None and os.path.exists(tmp):
        os.unlink(tmp)


DIGEST_V2 = "v2:"  # digests that also cover each container's kind and length


def digest(obj: Any, version: int = 2) -> str:
    """sha256 over every tensor's dtype, shape and bytes and every plain value, keys sorted; version 2
    also over each dict's and list's kind and length, so an empty list flipped into an empty dict (one
    bit in the pickle) no longer hashes the same. Version 1 is what files written before it carry.

    Walks with a stack, not recursion: a hostile file may nest lists deeper than Python's
    recursion limit. The top-level `DIGEST` entry is left out.
    """
    h = hashlib.sha256()
    stack: list[tuple[str, Any]] = [("", {k: v for k, v in obj.items() if k != DIGEST})]
    while stack:
        name, value = stack.pop()
        if isinstance(value, dict):
            if version >= 2:
                h.update(f"{name}:dict{len(value)}\n".encode())
            stack += [(f"{name}/{k}", v) for k, v in sorted(value.items(), key=lambda kv: str(kv[0]), reverse=True)]
        elif isinstance(value, (list, tuple)):
            if version >= 2:
                h.update(f"{name}:list{len(value)}\n".encode())
            stack += [(f"{name}/{i}", v) for i, v in reversed(list(enumerate(value)))]
        elif isinstance(value, torch.Tensor):
            t = value.detach().cpu().contiguous()
            h.update(f"{name}:{t.dtype}{tuple(t.shape)}\n".encode())
            h.update(memoryview(t.reshape(-1).view(torch.uint8).numpy()))
        else:
            h.update(f"{name}={value!r}\n".encode())
    return h.hexdigest()


def save_atomic(obj: Any, path: Path, compress: bool = False) -> None:
    """torch.save `obj` to `path` atomically; a dict gets its `digest` under `DIGEST`."""
    data = encode(obj, compress)
    write_atomic(path, lambda f: f.write(data))


def encode(obj: Any, compress: bool = False) -> bytes:
    """The bytes `save_atomic` writes: torch.save's, of a dict with its digest added, xz-compressed if
    `compress` (`load` reads either)."""
    if isinstance(obj, dict):
        obj = {**obj, DIGEST: DIGEST_V2 + digest(obj)}
    buffer = io.BytesIO()
    torch.save(obj, buffer)
    return lzma.compress(buffer.getvalue()) if compress else buffer.getvalue()


def _unpickle(path: Path, map_location: str | torch.device) -> Any:
    """torch.load with weights_only=True; whatever a file that is no checkpoint makes it raise becomes one line.

    The unpickler, the zip reader and the tensor rebuilders raise almost anything on random
    bytes (IndexError, KeyError, struct.error, ...), so every Exception is caught here, the
    one place that reads the file. MemoryError says more about the machine than the file; it
    propagates, like KeyboardInterrupt and SystemExit (which are not Exceptions).
    """
    try:
        with open(path, "rb") as f:
            compressed = f.read(len(XZ_MAGIC)) == XZ_MAGIC
        source = io.BytesIO(lzma.decompress(path.read_bytes())) if compressed else path
        return torch.load(source, map_location=map_location, weights_only=True)
    except MemoryError:
        raise
    except pickle.UnpicklingError as e:
        raise CheckpointError(f"{path}: not a usable checkpoint (corrupt, or not made by lvae): the safe loader (weights_only=True) "
                              f"refused it: {_weights_only_reason(e)}") from None
    except Exception as e:
        plain = isinstance(e, (RuntimeError, EOFError, zipfile.BadZipFile, OSError, lzma.LZMAError))  # messages that read well alone
        detail = first_line(e) if plain else f"{type(e).__name__}: {first_line(e)}"
        raise CheckpointError(f"{path}: not a usable checkpoint (truncated, corrupt or not made by lvae): {detail}") from None


def _matches_digest(obj: dict[str, Any], expected: Any) -> bool:
    try:
        if isinstance(expected, str) and expected.startswith(DIGEST_V2):
            return expected == DIGEST_V2 + digest(obj)
        return expected == digest(obj, version=1)  # a file written before version 2
    except (RuntimeError, TypeError, ValueError):  # a tensor lvae never writes (sparse, quantized): not ours
        return False


def load(path: Path, map_location: str | torch.device = "cpu") -> dict[str, Any]:
    """Load a checkpoint without unpickling code, and check its digest; a bad file gives one clear line.

    The dict comes back without its `DIGEST` entry.
    """
    path = Path(path)
    if not path.is_file():
        raise CheckpointError(f"{path}: no such checkpoint")
    obj = _unpickle(path, map_location)
    if not isinstance(obj, dict):
        raise CheckpointError(f"{path}: not an lvae checkpoint (holds a {type(obj).__name__}, not a dict)")
    expected = obj.pop(DIGEST, None)
    if expected is not None and not _matches_digest(obj, expected):
        raise CheckpointError(f"{path}: corrupt: its tensors and values do not match the digest written with them (the file changed after "
                              f"it was saved: a disk or copy error); use another copy")
    return obj


def save_rotating(obj: Any, run_dir: Path, iteration: int, keep: int) -> Path:
    """Write `checkpoint-<iteration>.pt` and `checkpoint.pt`, keeping the last `keep` numbered ones.

    `checkpoint.pt` is a hard link to the numbered file where the file system allows it
    (one write instead of two), else a second atomic copy; the old ones are deleted only
    after both exist.
    """
    run_dir = Path(run_dir)
    numbered = run_dir / f"checkpoint-{iteration:08d}.pt"
    save_atomic(obj, numbered)
    latest = run_dir / LATEST
    link = run_dir / f".{LATEST}.link.tmp"
    try:
        if link.exists():
            link.unlink()
        os.link(numbered, link)
        os.replace(link, latest)
    except OSError:
        save_atomic(obj, latest)
    for old in sorted(run_dir.glob(CHECKPOINT_GLOB))[:-keep]:
        old.unlink()
    return numbered


def config_differences(saved: dict[str, Any], current: dict[str, Any], prefix: str = "") -> dict[str, tuple[Any, Any]]:
    """{dotted field name: (saved value, current value)} where two config dicts differ."""
    diffs: dict[str, tuple[Any, Any]] = {}
    for key in sorted(set(saved) | set(current)):
        a, b = saved.get(key, "<missing>"), current.get(key, "<missing>")
        name = f"{prefix}{key}"
        if isinstance(a, dict) and isinstance(b, dict):
            diffs.update(config_differences(a, b, name + "."))
        elif a != b:
            diffs[name] = (a, b)
    return diffs


def load_config(path: Path):
    """The RunConfig in a run's config.json, checked as a new one would be; a missing or damaged file gives one clear line."""
    from lvae.config import ConfigError, RunConfig, validate
    path = Path(path)
    if not path.is_file():
        raise CheckpointError(f"{path.parent}: not a run folder (no config.json); train one with: python -m lvae train --out {path.parent}")
    what, fix = "a valid run config", "restore it, or start a new run with --overwrite"
    with reading(path, what, fix):
        cfg = RunConfig.from_dict(read_json(path, what))
        try:
            validate(cfg)  # a damaged value (a width of 10**12) is refused here, before a model is built from it
        except ConfigError as e:
            raise CheckpointError(f"{path}: {e}") from None
    return cfg


def non_finite_weights(state: dict[str, Any], path: Path) -> None:
    """Refuse weights holding NaN or Inf: a model built from them would give NaN numbers, not an error."""
    bad = next((k for k, v in state.items() if isinstance(v, torch.Tensor) and v.is_floating_point() and not torch.isfinite(v).all()), None)
    if bad is not None:
        raise CheckpointError(f"{path}: weight {bad} holds NaN or Inf; use another checkpoint")


def epoch_weights(run_dir: Path, epoch: int) -> Path:
    """Where a run keeps its weights from the end of `epoch` (`train.keep_epochs`)."""
    return Path(run_dir) / f"epoch-{epoch:04d}.pt"


def load_run(run_dir: Path, device: str | torch.device = "cpu", epoch: int | None = None):
    """(RunConfig, model in eval mode) from a run folder's config.json and latest checkpoint, or the
    weights it kept at the end of `epoch`."""
    from lvae.model import build_model

    run_dir = Path(run_dir)
    cfg = load_config(run_dir / "config.json")
    path = run_dir / LATEST if epoch is None else epoch_weights(run_dir, epoch)
    if epoch is not None and not path.exists():
        kept = sorted(int(p.stem.split("-")[1]) for p in run_dir.glob("epoch-*.pt") if p.stem.split("-")[1].isdigit())
        raise CheckpointError(f"{path}: this run kept no weights at epoch {epoch}; it kept epochs {kept} "
                              f"(train with --keep-epochs to keep others)")
    sd = load(path, map_location=device)
    model = build_model(cfg.model_kind, cfg.model).to(device)
    try:
        model.load_state_dict(sd["model"])
    except (KeyError, RuntimeError, TypeError, AttributeError) as e:
        raise CheckpointError(f"{path}: does not match {run_dir / 'config.json'}: {first_line(e)}") from None
    non_finite_weights(sd["model"], path)
    return cfg, model.eval()
