"""Training samplers: seeded orders whose augmentation can be replayed, and repeated augmentation.

**Sample keys.** The Trainer restores the global RNG states on resume, but Accelerate's data loader fetches one
batch ahead, so when checkpoint N is written the random crops/flips of batch N+1 have already been
drawn from the global RNG; a resumed run draws them again from another state, and from there on
its augmentations (and dropout) differ from the uninterrupted run's. With worker processes the
draws also depend on ``dataloader_num_workers``.

Instead the training sampler hands out *sample keys*: :class:`KeyedSampler` wraps the real sampler
(random order, or repeated augmentation) and yields :class:`SampleKey` s, row indices that carry a
seed mixing the run's seed, the epoch and the position in the epoch's stream. The training dataset
(:class:`hf_deit.data.transforms.TrainImages`) seeds Python's, NumPy's and torch's CPU generator with it
before augmenting that one image, and restores the process's own states afterwards. The same
position gets the same augmentation whatever happened before it: skipped batches on resume,
prefetching, workers. Cost: ~20 us of seeding per image, plus one save/restore of the global
states per batch in the main process (none in workers, whose states are disposable).

**Repeated augmentation** (Hoffer et al. 2020; DeiT's ``RASampler``), correct under Accelerate. The
official sampler is a ``DistributedSampler``: each image is repeated ``num_repeats`` times and
the repeats are dealt round-robin to the processes, so each copy is augmented on a different GPU;
each process keeps ``len(dataset) // world_size`` indices per epoch, so an epoch costs the same as
without repetition (and sees about ``1/num_repeats`` of the distinct images).

Accelerate shards a plain sampler itself: with ``split_batches=False`` process ``r`` receives the
batches ``r, r + W, r + 2W, ...`` of the sampler's stream. This sampler therefore builds the official
per-process index lists and interleaves them batch by batch, so that Accelerate's sharding hands each
process exactly its official list: disjoint between processes within a repeat round, complete over
the dataset, no ``torch.distributed`` call needed.
"""

from __future__ import annotations

import contextlib
import logging
import math
import random
from typing import Iterator, Optional

import numpy as np
import torch
from torch.utils.data import Sampler

logger = logging.getLogger(__name__)

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
    padding, code that logs the indices) keeps working; :class:`hf_deit.data.transforms.TrainImages` reads
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





class RepeatedAugmentationSampler(Sampler[int]):
    def __init__(
        self,
        dataset_size: int,
        num_repeats: int = 3,
        num_processes: int = 1,
        per_process_batch_size: int = 1,
        seed: int = 0,
        shuffle: bool = True,
    ) -> None:
        if num_repeats < 1:
            raise ValueError(f"num_repeats must be >= 1, got {num_repeats}.")
        if dataset_size < num_processes * per_process_batch_size:
            raise ValueError(
                f"Repeated augmentation needs at least one full batch per process: {dataset_size} images for "
                f"{num_processes} processes x batch {per_process_batch_size}."
            )
        self.dataset_size = dataset_size
        self.num_repeats = num_repeats
        self.num_processes = num_processes
        self.batch_size = per_process_batch_size
        self.seed = seed
        self.shuffle = shuffle
        self.epoch = 0
        # Whole batches per process (Accelerate would otherwise pad or drop uneven tails differently).
        self.batches_per_process = (dataset_size // num_processes) // per_process_batch_size

    def set_epoch(self, epoch: int) -> None:
        self.epoch = epoch

    def per_process_indices(self) -> list[list[int]]:
        """The official RASampler's index list of each process for the current epoch."""
        if self.shuffle:
            generator = torch.Generator().manual_seed(self.seed + self.epoch)
            order = torch.randperm(self.dataset_size, generator=generator).tolist()
        else:
            order = list(range(self.dataset_size))
        repeated = [index for index in order for _ in range(self.num_repeats)]
        total = math.ceil(len(repeated) / self.num_processes) * self.num_processes
        repeated += repeated[: total - len(repeated)]
        keep = self.batches_per_process * self.batch_size
        return [repeated[rank :: self.num_processes][:keep] for rank in range(self.num_processes)]

    def __iter__(self) -> Iterator[int]:
        lists = self.per_process_indices()
        for batch in range(self.batches_per_process):
            start, stop = batch * self.batch_size, (batch + 1) * self.batch_size
            for rank in range(self.num_processes):
                yield from lists[rank][start:stop]

    def __len__(self) -> int:
        return self.batches_per_process * self.batch_size * self.num_processes


def use_repeated_augmentation(num_repeats: int, world_size: int) -> bool:
    """Repeated augmentation only where each copy of an image lands on another process.

    The official DeiT code uses its ``RASampler`` only when distributed. With fewer processes than
    repeats the copies share a process, hence a batch: on one process 85 of 128 images in a batch
    are copies of others and an epoch sees a third of the dataset. Such runs fall back to the
    seeded random order, with a warning.
    """
    if num_repeats <= 1:
        return False
    if world_size < num_repeats:
        logger.warning(
            "repeated_augmentation=%d needs at least %d processes so that each copy of an image is augmented on "
            "another one; with %d the copies would share batches. Using the seeded random order instead (as the "
            "official DeiT code does without distributed training).",
            num_repeats, num_repeats, world_size,
        )
        return False
    return True


def train_sampler(
    dataset: object, seed: int, repeats: int = 1, world_size: int = 1, per_process_batch_size: int = 1
) -> Optional[Sampler]:
    """The training order of every hf-deit run: repeated augmentation (when it applies) or a seeded random
    order, keyed when ``dataset`` takes sample keys; None leaves the Trainer's own sampler in place."""
    sampler = None
    if use_repeated_augmentation(repeats, world_size):
        sampler = RepeatedAugmentationSampler(
            len(dataset), num_repeats=repeats, num_processes=world_size,  # type: ignore[arg-type]
            per_process_batch_size=per_process_batch_size, seed=seed,
        )
    return keyed_sampler_for(dataset, seed, sampler)
