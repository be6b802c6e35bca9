"""Augmentation as a pure function of (seed, epoch, position): exact resume, any number of workers.

The Trainer restores the global RNG states on resume, but Accelerate's data loader fetches one
batch ahead, so when checkpoint N is written the random crops/flips of batch N+1 have already been
drawn from the global RNG; a resumed run draws them again from another state, and from there on
its augmentations (and dropout) differ from the uninterrupted run's. With worker processes the
draws also depend on ``dataloader_num_workers``.

Instead the training sampler hands out *sample keys*: :class:`KeyedSampler` wraps the real sampler
(random order, or repeated augmentation) and yields :class:`SampleKey` s, row indices that carry a
seed mixing the run's seed, the epoch and the position in the epoch's stream. The training dataset
(:class:`hf_deit.data.TrainImages`) seeds Python's, NumPy's and torch's CPU generator with it
before augmenting that one image, and restores the process's own states afterwards. The same
position gets the same augmentation whatever happened before it: skipped batches on resume,
prefetching, workers. Cost: ~20 us of seeding per image, plus one save/restore of the global
states per batch in the main process (none in workers, whose states are disposable).
"""

from __future__ import annotations

import contextlib
import random
from typing import Iterator, Optional

import numpy as np
import torch
from torch.utils.data import Sampler

_MASK64 = (1 << 64) - 1


def mix_seed(*values: int) -> int:
    """A well-spread 63-bit seed from a few integers (splitmix64 chained), same in every process."""
    state = 0x9E3779B97F4A7C15
    for value in values:
        state = (state ^ (int(value) & _MASK64)) * 0xBF58476D1CE4E5B9 & _MASK64
        state = (state ^ (state >> 31)) * 0x94D049BB133111EB & _MASK64
        state ^= state >> 29
    return state >> 1


def seed_all_cpu(seed: int) -> None:
    """Seed Python's, NumPy's and torch's CPU generators; CUDA generators are left alone
    (``torch.manual_seed`` would reseed them too and disturb the model's dropout stream)."""
    random.seed(seed)
    np.random.seed(seed & 0xFFFFFFFF)
    torch.random.default_generator.manual_seed(seed)


@contextlib.contextmanager
def preserved_cpu_rng() -> Iterator[None]:
    """Restore the global CPU generators on exit: augmenting in the main process must not move
    the stream that the training step (dropout, Mixup) draws from."""
    states = (random.getstate(), np.random.get_state(), torch.random.default_generator.get_state())
    try:
        yield
    finally:
        random.setstate(states[0])
        np.random.set_state(states[1])
        torch.random.default_generator.set_state(states[2])


class SeededRandomSampler(Sampler[int]):
    """A random order that depends only on (seed, epoch), like Accelerate's seedable sampler."""

    def __init__(self, dataset_size: int, seed: int) -> None:
        self.dataset_size = dataset_size
        self.seed = seed
        self.epoch = 0

    def set_epoch(self, epoch: int) -> None:
        self.epoch = epoch

    def __iter__(self) -> Iterator[int]:
        generator = torch.Generator().manual_seed(mix_seed(self.seed, self.epoch))
        return iter(torch.randperm(self.dataset_size, generator=generator).tolist())

    def __len__(self) -> int:
        return self.dataset_size


class SampleKey(int):
    """A row index that also carries its augmentation seed.

    An ``int`` subclass, so everything that handles sampler indices (Accelerate's sharding and
    padding, code that logs the indices) keeps working; :class:`hf_deit.data.TrainImages` reads
    ``.seed``.
    """

    seed: int

    def __new__(cls, row: int, seed: int) -> "SampleKey":
        key = super().__new__(cls, int(row))
        key.seed = int(seed)
        return key

    def __reduce__(self):  # to data-loader workers
        return (SampleKey, (int(self), self.seed))

    def __repr__(self) -> str:
        return f"SampleKey(row={int(self)}, seed={self.seed})"

    def __str__(self) -> str:  # prints as the row it is
        return int.__repr__(self)


class KeyedSampler(Sampler[SampleKey]):
    """Yields a :class:`SampleKey` for each index of ``sampler``; its seed = f(seed, epoch, position)."""

    def __init__(self, sampler: Sampler[int], seed: int) -> None:
        if not hasattr(sampler, "set_epoch"):
            raise TypeError(f"{type(sampler).__name__} has no set_epoch: its order cannot be replayed on resume.")
        self.sampler = sampler
        self.seed = seed
        self.epoch = 0

    def set_epoch(self, epoch: int) -> None:
        self.epoch = epoch
        self.sampler.set_epoch(epoch)

    def __iter__(self) -> Iterator["SampleKey"]:
        for position, row in enumerate(self.sampler):
            yield SampleKey(row, mix_seed(self.seed, self.epoch, position))

    def __len__(self) -> int:
        return len(self.sampler)


def keyed_sampler_for(dataset: object, seed: int, sampler: Optional[Sampler[int]] = None) -> Optional[Sampler]:
    """The training sampler for ``dataset``: ``sampler`` (default: a seeded random order) wrapped in a
    :class:`KeyedSampler` when the dataset takes sample keys; ``sampler`` unchanged otherwise."""
    if not getattr(dataset, "accepts_sample_keys", False):
        return sampler
    inner = sampler if sampler is not None else SeededRandomSampler(len(dataset), seed)  # type: ignore[arg-type]
    return KeyedSampler(inner, seed)


def sample_key(key: object) -> tuple[int, Optional[int]]:
    """``(row, seed)`` from a sampler key (a :class:`SampleKey` or a ``(row, seed)`` tuple); a plain
    index (stock samplers, direct indexing) has no seed."""
    if isinstance(key, tuple):
        return int(key[0]), int(key[1])
    return int(key), getattr(key, "seed", None)  # type: ignore[call-overload]
