"""Seeded damage to a good file, shared by the fuzz tests: its bytes, or the values inside it.

`byte_mutations` cuts, flips and replaces bytes (what a disk, a copy or a crash does);
`tree_mutations` changes the parsed contents (a JSON document, a checkpoint dict): wrong
types, missing keys, NaN and huge numbers, lists and tensors of the wrong shape (what an
edit by hand, another version of lvae or a bug does). Every case is drawn from the `rng`
given, so a failure names a case that repeats.
"""

from __future__ import annotations

import copy
import json
import random
from typing import Any, Callable

import torch

Mutation = tuple[str, bytes]  # (what was done, the file's new contents)

# Values a damaged field may hold: wrong types, NaN, infinities and numbers too large for any use.
ODD_VALUES: list[Any] = [None, True, False, "", "x", "NaN", [], {}, [1, 2], [[[]]], -1, 0, 1.5, -0.0,
                         float("nan"), float("inf"), float("-inf"), 1e308, -1e308, 10**30, 2**63, -(2**63)]


def byte_mutations(good: bytes, rng: random.Random, n: int) -> list[Mutation]:
    """`n` damaged copies of `good`: truncations, bit flips, random bytes, random tails, inserted and deleted bytes."""

    def flip(data: bytes, k: int) -> bytes:
        out = bytearray(data)
        for _ in range(k):
            out[rng.randrange(len(out))] ^= 1 << rng.randrange(8)
        return bytes(out)

    kinds: list[tuple[str, Callable[[], bytes]]] = [
        ("truncated", lambda: good[: rng.randrange(len(good))]),
        ("one bit flipped", lambda: flip(good, 1)),
        ("2-16 bits flipped", lambda: flip(good, rng.randint(2, 16))),
        ("random bytes", lambda: rng.randbytes(rng.choice([0, 1, 3, 16, 100, len(good)]))),
        ("random tail", lambda: good[: rng.randrange(len(good))] + rng.randbytes(rng.randint(1, 64))),
        ("byte inserted", lambda: (lambda i: good[:i] + rng.randbytes(1) + good[i:])(rng.randrange(len(good)))),
        ("byte deleted", lambda: (lambda i: good[:i] + good[i + 1 :])(rng.randrange(len(good)))),
    ]
    out = []
    for i in range(n):
        what, make = kinds[i % len(kinds)]
        out.append((what, make()))
    return out


def _paths(tree: Any, prefix: tuple = ()) -> list[tuple]:
    """Every key / index path inside nested dicts and lists (the root is `()`)."""
    out = [prefix]
    if isinstance(tree, dict):
        for k, v in tree.items():
            out += _paths(v, prefix + (k,))
    elif isinstance(tree, list):
        for i, v in enumerate(tree):
            out += _paths(v, prefix + (i,))
    return out


def _get(tree: Any, path: tuple) -> Any:
    for p in path:
        tree = tree[p]
    return tree


def _odd_tensor(t: torch.Tensor, rng: random.Random) -> tuple[str, Any]:
    """A tensor of the wrong shape or dtype, or holding NaN or a huge value."""
    choice = rng.randrange(5)
    if choice == 0 and t.is_floating_point() and t.numel():
        bad = t.clone()
        bad.view(-1)[rng.randrange(t.numel())] = rng.choice([float("nan"), float("inf"), -float("inf")])
        return "a NaN or Inf inside", bad
    if choice == 1 and t.is_floating_point() and t.numel():
        return "huge values", torch.full_like(t, 3e38)
    if choice == 2 and t.dim():
        return "a shorter first dimension", t[: max(0, t.shape[0] - 1)].clone()
    if choice == 3:
        return "flattened", t.reshape(-1).clone() if t.dim() != 1 else t.reshape(1, -1).clone()
    return "another dtype", t.to(torch.int64 if t.is_floating_point() else torch.float32)


def _mutate_once(tree: Any, rng: random.Random) -> str:
    """Damage `tree` in place at one random path; returns what was done."""
    path = rng.choice(_paths(tree)[1:] or [()])
    if not path:
        return "(nothing to damage)"
    parent, key = _get(tree, path[:-1]), path[-1]
    value = parent[key]
    where = "/".join(map(str, path))
    choice = rng.randrange(4)
    if choice == 0 and isinstance(parent, dict):
        del parent[key]
        return f"{where} removed"
    if isinstance(value, torch.Tensor):
        what, parent[key] = _odd_tensor(value, rng)
        return f"{where}: {what}"
    if choice == 1 and isinstance(value, list):
        parent[key] = rng.choice([value[:-1], value + value[-1:], [value], value[::-1]])
        return f"{where}: a list of another shape"
    if choice == 2 and isinstance(value, dict):
        parent[key] = list(value.values())
        return f"{where}: a list where a dict was"
    parent[key] = rng.choice(ODD_VALUES)
    return f"{where} = {parent[key]!r}"


DEEP = b"[" * 100_000 + b"]" * 100_000  # nesting deeper than Python's recursion limit: JSON parsers raise RecursionError


def tree_mutations(good: Any, rng: random.Random, n: int, encode: Callable[[Any], bytes], deep: bytes | None = None) -> list[Mutation]:
    """`n` damaged copies of a parsed document: 1-3 fields each changed, removed or reshaped, then `encode`d.

    A few whole-document cases are mixed in: another top-level type, and (for text formats) `deep`.
    """
    out: list[Mutation] = []
    for i in range(n):
        if i % 50 == 0:
            out.append(("another type at the top", encode([good] if not isinstance(good, list) else {"rows": good})))
            continue
        if i % 50 == 25 and deep is not None:
            out.append(("nested 100000 deep", deep))
            continue
        tree = copy.deepcopy(good)
        what = "; ".join(_mutate_once(tree, rng) for _ in range(rng.randint(1, 3)))
        out.append((what, encode(tree)))
    return out


def encode_json(tree: Any) -> bytes:
    """As lvae writes JSON (NaN and Infinity allowed, as Python's json writes them)."""
    return (json.dumps(tree, indent=1) + "\n").encode()


def encode_jsonl(rows: Any) -> bytes:
    """One JSON value a line, as the training logs are written."""
    return "".join(json.dumps(r) + "\n" for r in rows).encode() if isinstance(rows, list) else encode_json(rows)
