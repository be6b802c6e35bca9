"""Repeated augmentation (Hoffer et al. 2020; DeiT's ``RASampler``) that stays correct under Accelerate.

The official sampler is a ``DistributedSampler``: each image is repeated ``num_repeats`` times and
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

import math
from typing import Iterator

import torch
from torch.utils.data import Sampler


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
