"""What the student's and the teacher's trainers share beyond the stock ``Trainer``.

:class:`ImageTrainerMixin`: the training order of :func:`hf_deit.data.samplers.train_sampler` (seeded by
``data_seed``, else ``seed``; keyed so that a resumed run replays each image's augmentation), and a
device-resident training set (:class:`hf_deit.data.device.DeviceResidentImages`) that makes its batches
on the device (no workers, sharded by Accelerate). Any other training set goes through the Trainer's loader.
Every run carries a :class:`hf_deit.training.clock.TrainingClock`; with ``max_train_minutes`` the learning-rate
schedule follows it (:func:`hf_deit.training.clock.schedule_on_clock`).
"""

from __future__ import annotations

from ..data.device import DeviceResidentImages, device_dataloader
from ..data.samplers import train_sampler
from .clock import TrainingClock, schedule_on_clock


class ImageTrainerMixin:
    def __init__(self, *args, **kwargs) -> None:
        super().__init__(*args, **kwargs)
        minutes = getattr(self.args, "max_train_minutes", None)
        self.training_clock = TrainingClock(None if minutes is None else 60.0 * minutes)
        self.add_callback(self.training_clock)

    def create_scheduler(self, num_training_steps: int, optimizer=None):
        created = self.lr_scheduler is None
        scheduler = super().create_scheduler(num_training_steps, optimizer)
        if created and self.training_clock.budget_s is not None:
            schedule_on_clock(scheduler, self.training_clock, num_training_steps)
        return scheduler

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
