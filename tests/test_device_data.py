"""Device-resident training data: decoded once, cropped/flipped/normalised in batch on the device."""

import types

import pytest
import torch
from torchvision.transforms.v2 import functional as TF

from hf_deit.config import DataConfig, ModelConfig, parse_config
from hf_deit.data.datasets import load_image_classification_data
from hf_deit.data.transforms import make_eval_transform
from hf_deit.data.samplers import SampleKey
from hf_deit.data.device import DeviceResidentImages, crop_flip_normalise, device_dataloader, device_resident_train
from hf_deit.modeling import student_image_processor

from helpers import TINY_STUDENT_ARGS

MEAN, STD = [0.485, 0.456, 0.406], [0.229, 0.224, 0.225]


def synthetic(n=6, size=8):
    images = torch.randint(0, 256, (n, 3, size, size), dtype=torch.uint8, generator=torch.Generator().manual_seed(0))
    return DeviceResidentImages(images, torch.arange(n) % 3, MEAN, STD, random_crop_padding=2)


def cpu_accelerator(num_processes=1, process_index=0):
    """What ``device_dataloader`` needs of an Accelerator, sharding as rank ``process_index`` of ``num_processes``."""
    from accelerate.data_loader import prepare_data_loader

    def prepare(loader):
        return prepare_data_loader(loader, torch.device("cpu"), num_processes=num_processes,
                                   process_index=process_index, put_on_device=True)

    return types.SimpleNamespace(device=torch.device("cpu"), prepare=prepare)


def keyed_sampler(n, seed=0):
    from hf_deit.data.samplers import KeyedSampler, SeededRandomSampler

    return KeyedSampler(SeededRandomSampler(n, seed), seed)


def test_batches_have_the_training_shapes_and_dtypes():
    dataset = synthetic()
    batch = dataset.collate([SampleKey(r, 7) for r in (0, 5, 2, 2)])
    assert batch["pixel_values"].shape == (4, 3, 8, 8) and batch["pixel_values"].dtype == torch.float32
    assert batch["labels"].tolist() == [0, 2, 2, 2] and batch["labels"].dtype == torch.int64
    assert batch["pixel_values"].device == dataset.device
    single = dataset[SampleKey(1, 3)]
    assert single["pixel_values"].shape == (3, 8, 8) and int(single["labels"]) == 1
    assert len(dataset) == 6 and dataset.nbytes == 6 * 3 * 8 * 8 + 6 * 8


def test_augmentation_is_random_per_image_but_a_function_of_the_seed():
    dataset = synthetic()
    keys = [SampleKey(0, 11)] + [SampleKey(0, 0)] * 15  # one image, 16 times: the batch's first key seeds it
    first, again = dataset.collate(keys)["pixel_values"], dataset.collate(keys)["pixel_values"]
    assert torch.equal(first, again)
    assert len({tuple(image.flatten().tolist()) for image in first}) > 4  # different crops/flips per copy
    other = dataset.collate([SampleKey(0, 12)] + keys[1:])["pixel_values"]
    assert not torch.equal(first, other)
    # Plain rows (no seed) draw from torch's global RNG.
    torch.manual_seed(5)
    plain = dataset.collate([0] * 16)["pixel_values"]
    torch.manual_seed(5)
    assert torch.equal(plain, dataset.collate([0] * 16)["pixel_values"])


@pytest.mark.parametrize("mode", ["reflect", "constant"])
@pytest.mark.parametrize("top,left,flip", [(0, 0, False), (4, 1, True), (2, 2, False), (3, 4, True)])
def test_crop_and_flip_match_torchvision(top, left, flip, mode):
    image = torch.arange(1, 1 + 3 * 6 * 7, dtype=torch.uint8).view(1, 3, 6, 7)
    ones, zeros = torch.ones(1, 3, 1, 1), torch.zeros(1, 3, 1, 1)
    ours = crop_flip_normalise(image, torch.tensor([0]), torch.tensor([top]), torch.tensor([left]),
                               torch.tensor([flip]), 2, ones, zeros, padding_mode=mode)[0]
    expected = TF.crop(TF.pad(image[0], [2], padding_mode=mode), top, left, 6, 7)  # RandomCrop's own ops
    if flip:
        expected = TF.horizontal_flip(expected)
    assert torch.equal(ours, expected.float())


def test_draws_cover_every_offset_and_both_flips():
    drawn = synthetic().draw(2000, seed=1)
    assert set(drawn[0].tolist()) == set(drawn[1].tolist()) == set(range(5))  # padding 2: offsets 0..4
    assert 0.4 < drawn[2].float().mean() < 0.6
    assert not DeviceResidentImages(torch.zeros(2, 3, 4, 4, dtype=torch.uint8), torch.zeros(2), MEAN, STD,
                                    horizontal_flip=False, random_crop_padding=1).draw(50, 0)[2].any()


@pytest.fixture(scope="module")
def sample_train(sample_dir):
    config = DataConfig(dataset_name=str(sample_dir), max_train_samples=40, max_eval_samples=8)
    data = load_image_classification_data(config)
    decoded = data.train
    processor = student_image_processor(ModelConfig())
    return data, decoded, processor


def test_unaugmented_image_equals_the_processors_eval_tensor(sample_train):
    data, decoded, processor = sample_train
    dataset = device_resident_train(data, processor, DataConfig(random_crop_padding=0, horizontal_flip=False))
    assert len(dataset) == 40 and dataset.images.dtype == torch.uint8 and dataset.images.shape[1:] == (3, 32, 32)
    batch = dataset.collate(list(range(40)))
    expected = make_eval_transform(data, processor)(decoded[:40])
    torch.testing.assert_close(batch["pixel_values"], expected["pixel_values"], atol=1e-5, rtol=0)
    assert batch["labels"].tolist() == expected["labels"].tolist()


def test_images_of_another_size_are_resized_once_like_the_train_transform(sample_train):
    data, decoded, _ = sample_train
    processor = student_image_processor(ModelConfig(image_size=16, patch_size=4))
    dataset = device_resident_train(data, processor, DataConfig(random_crop_padding=0, horizontal_flip=False))
    assert dataset.images.shape == (40, 3, 16, 16)
    expected = TF.pil_to_tensor(TF.resize(decoded[0]["img"], [16, 16], interpolation=TF.InterpolationMode.BICUBIC,
                                          antialias=True))
    assert torch.equal(dataset.images[0], expected)


def test_ranks_get_disjoint_shards_and_resume_replays_the_same_batches():
    from accelerate import skip_first_batches

    dataset = synthetic(n=24)
    streams = []
    for rank in range(2):
        loader = device_dataloader(dataset, 4, keyed_sampler(24), cpu_accelerator(2, rank))
        loader.set_epoch(1)
        streams.append([int(i) for batch in loader.batch_sampler for i in batch])
    assert len(streams[0]) == len(streams[1]) == 12 and not set(streams[0]) & set(streams[1])
    assert sorted(streams[0] + streams[1]) == list(range(24))

    loader = device_dataloader(dataset, 4, keyed_sampler(24), cpu_accelerator())
    loader.set_epoch(1)
    batches = list(loader)
    assert len(batches) == 6 and all(b["pixel_values"].shape == (4, 3, 8, 8) for b in batches)
    resumed = skip_first_batches(loader, 2)
    resumed.set_epoch(1)
    for replayed, original in zip(resumed, batches[2:]):
        assert torch.equal(replayed["pixel_values"], original["pixel_values"])
        assert torch.equal(replayed["labels"], original["labels"])
    loader.set_epoch(2)
    assert not torch.equal(next(iter(loader))["pixel_values"], batches[0]["pixel_values"])


def test_short_training_run_with_device_resident_data(sample_dir, tiny_teacher, tmp_path):
    from hf_deit.training.distill import build_distillation_run

    model_config, data_config, args = parse_config([
        "--config", "configs/quickstart.yaml", "--dataset_name", str(sample_dir),
        "--teacher_model_name_or_path", str(tiny_teacher), "--device_resident_data", "true",
        "--max_train_samples", "48", "--max_eval_samples", "16", "--num_train_epochs", "1",
        "--per_device_train_batch_size", "16", "--per_device_eval_batch_size", "16", "--logging_steps", "1",
        "--dataloader_num_workers", "2", "--mixup_alpha", "0.8", "--repeated_augmentation", "3",
        "--output_dir", str(tmp_path / "run"), "--disable_tqdm", "true", *TINY_STUDENT_ARGS,
    ])
    run = build_distillation_run(model_config, data_config, args)
    trainer = run.trainer
    assert isinstance(trainer.train_dataset, DeviceResidentImages) and len(trainer.train_dataset) == 48
    loader = trainer.get_train_dataloader()
    assert loader.num_workers == 0 and isinstance(loader.dataset, DeviceResidentImages)
    batch = next(iter(loader))
    assert batch["pixel_values"].shape == (16, 3, 32, 32) and batch["pixel_values"].device == trainer.args.device
    trainer.train()
    logged = [entry for entry in trainer.state.log_history if "loss" in entry]
    assert len(logged) == 3 and all(torch.isfinite(torch.tensor(entry["loss"])) for entry in logged)
    metrics = trainer.evaluate()  # evaluation stays on the data-loader path
    assert 0.0 <= metrics["eval_fused_top1"] <= 1.0


def test_unsupported_augmentations_are_refused_with_the_fix():
    with pytest.raises(ValueError, match="rand_augment.*set device_resident_data: false"):
        DataConfig(device_resident_data=True, rand_augment="rand-m9-mstd0.5-inc1")
    with pytest.raises(ValueError, match="random_erasing \\(0.25\\)"):
        parse_config(["--device_resident_data", "true", "--random_erasing", "0.25"])
    DataConfig(device_resident_data=True)  # crop + flip (the default) is fine
    with pytest.raises(ValueError, match="random_crop_padding=8 must be smaller than the image side"):
        DeviceResidentImages(torch.zeros(2, 3, 8, 8, dtype=torch.uint8), torch.zeros(2), MEAN, STD, 8)
