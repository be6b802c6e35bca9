"""What the student's and the teacher's trainers share beyond the stock ``Trainer``.

:class:`ImageTrainerMixin`: the training order of :func:`hf_deit.data.samplers.train_sampler` (seeded by
``data_seed``, else ``seed``; keyed so that a resumed run replays each image's augmentation), and a
device-resident training set (:class:`hf_deit.data.device.DeviceResidentImages`) that makes its batches
on the device (no workers, sharded by Accelerate). Any other training set goes through the Trainer's loader.
"""

from __future__ import annotations

from ..data.device import DeviceResidentImages, device_dataloader
from ..data.samplers import train_sampler


class ImageTrainerMixin:
    def _get_train_sampler(self, train_dataset=None):
        dataset = train_dataset if train_dataset is not None else self.train_dataset
        args = self.args
        sampler = train_sampler(
            dataset,
            seed=args.data_seed if args.data_seed is not None else args.seed,
            repeats=getattr(args, "repeated_augmentation", 1),
            world_size=args.world_size,
            per_process_batch_size=args.per_device_train_batch_size,
        )
        return sampler if sampler is not None else super()._get_train_sampler(train_dataset)

    def get_train_dataloader(self):
        if not isinstance(self.train_dataset, DeviceResidentImages):
            return super().get_train_dataloader()
        return device_dataloader(
            self.train_dataset,
            self._train_batch_size,
            self._get_train_sampler(self.train_dataset),
            self.accelerator,
            drop_last=self.args.dataloader_drop_last,
        )
