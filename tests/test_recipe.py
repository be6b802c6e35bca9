"""The DeiT recipe switches: augmentation, Mixup/CutMix, repeated augmentation, drop-path, EMA,
the plain-ViT ablation and fine-tuning a pretrained DeiT at another resolution."""

import json

import pytest
import torch
from torch import nn

import hf_deit.teacher
import hf_deit.training.trainer
from hf_deit.config import DistillationConfig, ModelConfig, parse_config
from hf_deit.cli.distill import main
from hf_deit.training.ema import EMACallback
from hf_deit.modeling import build_student
from hf_deit.data.samplers import RepeatedAugmentationSampler

from helpers import CIFAR10_NAMES, TINY_STUDENT_ARGS

ID2LABEL = dict(enumerate(CIFAR10_NAMES))
RECIPE_ON = [
    "--rand_augment", "rand-m9-mstd0.5-inc1", "--random_erasing", "0.25", "--device_resident_data", "false",
    "--mixup_alpha", "0.8", "--cutmix_alpha", "1.0", "--label_smoothing_factor", "0.1",
    "--repeated_augmentation", "3", "--drop_path_rate", "0.1", "--ema_decay", "0.99",
]


def tiny_args(sample_dir, output_dir, *extra):
    return [
        "--config", "configs/quickstart.yaml", "--dataset_name", str(sample_dir),
        "--max_train_samples", "64", "--max_eval_samples", "32", "--num_train_epochs", "1",
        "--per_device_train_batch_size", "16", "--per_device_eval_batch_size", "32",
        "--logging_steps", "1", "--output_dir", str(output_dir), "--disable_tqdm", "true",
        *TINY_STUDENT_ARGS, *extra,
    ]


@pytest.fixture(scope="module")
def recipe_run(sample_dir, tiny_teacher, tmp_path_factory, request):
    """One tiny run with every recipe switch on; the loss function is spied on to see its targets."""
    seen = []
    original = hf_deit.training.trainer.deit_distillation_loss

    def spy(cls_logits, distill_logits, labels, *args, **kwargs):
        seen.append((labels.detach().clone(), kwargs.get("label_smoothing")))
        return original(cls_logits, distill_logits, labels, *args, **kwargs)

    hf_deit.training.trainer.deit_distillation_loss = spy
    try:
        output_dir = tmp_path_factory.mktemp("recipe") / "student"
        metrics = main(tiny_args(sample_dir, output_dir, "--teacher_model_name_or_path", str(tiny_teacher), *RECIPE_ON))
    finally:
        hf_deit.training.trainer.deit_distillation_loss = original
    return output_dir, metrics, seen


def test_recipe_run_trains_and_reports_ema(recipe_run):
    output_dir, metrics, _ = recipe_run
    for key in ("eval_cls_top1", "eval_distill_top1", "eval_fused_top1", "eval_teacher_top1", "eval_ema_fused_top1"):
        assert 0.0 <= metrics[key] <= 1.0
    assert "EMA average" in (output_dir / "results.md").read_text()


def test_mixup_cutmix_targets_are_soft_and_reach_the_loss(recipe_run):
    _, _, seen = recipe_run
    training_targets = [labels for labels, smoothing in seen if labels.dtype.is_floating_point]
    assert training_targets, "Mixup/CutMix never produced soft targets"
    for labels in training_targets:
        assert labels.shape[-1] == 10
        torch.testing.assert_close(labels.sum(-1), torch.ones(labels.shape[0]))
        assert labels.min() >= 0
        assert (labels > 0).sum(-1).min() >= 2  # smoothed: never a hard one-hot
    eval_targets = [labels for labels, _ in seen if not labels.dtype.is_floating_point]
    assert eval_targets, "evaluation must see the true index labels"


def test_ema_checkpoint_loads_in_stock_transformers_and_differs(recipe_run):
    from transformers import DeiTForImageClassificationWithTeacher, pipeline

    output_dir, _, _ = recipe_run
    ema_state = DeiTForImageClassificationWithTeacher.from_pretrained(output_dir / "ema").state_dict()
    live = DeiTForImageClassificationWithTeacher.from_pretrained(output_dir).state_dict()
    assert set(live) == set(ema_state)
    assert any(not torch.equal(live[k], ema_state[k]) for k in live)
    classifier = pipeline("image-classification", model=str(output_dir / "ema"), device="cpu")
    from PIL import Image

    assert classifier(Image.new("RGB", (32, 32), "red"))[0]["label"] in CIFAR10_NAMES


def test_ema_trails_the_live_weights():
    model = nn.Linear(2, 2, bias=False)
    nn.init.zeros_(model.weight)
    callback = EMACallback(decay=0.9, warmup=False)

    class State:
        global_step = 0

    callback.on_train_begin(None, State, None, model=model)
    for step in range(1, 21):
        with torch.no_grad():
            model.weight.fill_(float(step))  # live weights climb steadily
        State.global_step = step
        callback.on_step_end(None, State, None, model=model)
    ema_value = callback.ema.module.weight[0, 0].item()
    # With decay 0.9 the average lags ~1/(1-0.9) = 10 steps behind a steadily climbing value.
    assert 20.0 - 12.0 < ema_value < 20.0 - 6.0


def test_drop_path_is_active_in_training_and_off_in_eval():
    model, _ = build_student(ModelConfig(hidden_size=32, num_hidden_layers=4, num_attention_heads=2,
                                         intermediate_size=64, patch_size=8, drop_path_rate=0.5), ID2LABEL)
    plain, _ = build_student(ModelConfig(hidden_size=32, num_hidden_layers=4, num_attention_heads=2,
                                         intermediate_size=64, patch_size=8), ID2LABEL)
    assert set(model.state_dict()) == set(plain.state_dict())  # nothing new to save
    plain.load_state_dict(model.state_dict())
    x = torch.randn(8, 3, 32, 32)
    model.eval(), plain.eval()
    with torch.no_grad():
        torch.testing.assert_close(model(pixel_values=x).logits, plain(pixel_values=x).logits)
        model.train()
        torch.manual_seed(0)
        first = model(pixel_values=x).logits
        second = model(pixel_values=x).logits
    assert not torch.allclose(first, second)


@pytest.mark.parametrize("distillation_token", [True, False])
def test_patch_dropout_trains_on_a_share_of_the_patches_and_keeps_the_prefix_tokens(distillation_token):
    shape = dict(hidden_size=32, num_hidden_layers=2, num_attention_heads=2, intermediate_size=64, patch_size=8,
                 distillation_token=distillation_token)
    model, _ = build_student(ModelConfig(**shape, patch_dropout=0.75), ID2LABEL)
    plain, _ = build_student(ModelConfig(**shape), ID2LABEL)
    assert set(model.state_dict()) == set(plain.state_dict())  # nothing new to save
    plain.load_state_dict(model.state_dict())
    x = torch.randn(4, 3, 32, 32)  # 16 patches of 8x8
    prefix = 2 if distillation_token else 1
    embeddings = model.base_model.embeddings
    prefix_embeddings = torch.cat([embeddings.cls_token] + ([embeddings.distillation_token] if distillation_token
                                                            else []), dim=1) + embeddings.position_embeddings[:, :prefix]
    model.eval(), plain.eval()
    with torch.no_grad():
        torch.testing.assert_close(model(pixel_values=x).logits, plain(pixel_values=x).logits)
        assert model(pixel_values=x, output_hidden_states=True).hidden_states[0].shape[1] == prefix + 16
        model.train()
        trained_on = model(pixel_values=x, output_hidden_states=True).hidden_states[0]
    assert trained_on.shape[1] == prefix + 4  # a quarter of the patches
    torch.testing.assert_close(trained_on[:, :prefix], prefix_embeddings.expand(4, -1, -1))


def test_patch_dropout_out_of_range_names_the_key():
    with pytest.raises(ValueError, match="patch_dropout must be in"):
        ModelConfig(patch_dropout=1.0)


def sharded(sampler, num_processes, batch_size):
    """What Accelerate hands each process: its own BatchSamplerShard over our sampler."""
    from accelerate.data_loader import BatchSamplerShard
    from torch.utils.data import BatchSampler

    batches = BatchSampler(sampler, batch_size, drop_last=True)
    return [
        [i for batch in BatchSamplerShard(batches, num_processes=num_processes, process_index=rank) for i in batch]
        for rank in range(num_processes)
    ]


@pytest.mark.parametrize("num_processes", [1, 2, 3, 4])
def test_repeated_augmentation_sampler_under_accelerate_sharding(num_processes):
    n, repeats, batch = 96, 3, 4
    sampler = RepeatedAugmentationSampler(n, repeats, num_processes, batch, seed=1)
    sampler.set_epoch(2)
    official = sampler.per_process_indices()
    streams = sharded(sampler, num_processes, batch)
    assert streams == official  # Accelerate's sharding hands each process the official RASampler list
    assert all(len(s) == (n // num_processes) // batch * batch for s in streams)  # an epoch costs one pass
    # Complete and disjoint: dealt round-robin, the processes' streams are exactly the start of the
    # shuffled stream in which every image appears `repeats` times in a row (the official RASampler).
    keep = len(streams[0])
    dealt = [streams[rank][j] for j in range(keep) for rank in range(num_processes)]
    assert dealt == sampler_full(sampler)[: keep * num_processes]
    if num_processes >= repeats:
        # Disjoint: the copies of an image go to different processes, never twice to one.
        for stream in streams:
            assert len(stream) == len(set(stream))
    sampler.set_epoch(3)
    assert sampler.per_process_indices() != official  # reshuffled every epoch


def sampler_full(sampler):
    generator = torch.Generator().manual_seed(sampler.seed + sampler.epoch)
    order = torch.randperm(sampler.dataset_size, generator=generator).tolist()
    return [i for i in order for _ in range(sampler.num_repeats)]


def test_repeated_augmentation_sampler_is_what_the_trainer_uses(sample_dir, tiny_teacher, tmp_path, monkeypatch):
    """With at least as many processes as repeats (here 3, as the trainer sees them)."""
    from hf_deit.training.trainer import DistillationTrainer

    _, _, args = parse_config(["--repeated_augmentation", "3", "--output_dir", str(tmp_path)])
    monkeypatch.setattr(DistillationConfig, "world_size", property(lambda self: 3))
    model, _ = build_student(ModelConfig(hidden_size=32, num_hidden_layers=1, num_attention_heads=2,
                                         intermediate_size=64, patch_size=8), ID2LABEL)
    args.distillation_type = "none"
    trainer = DistillationTrainer(model=model, args=args, train_dataset=list(range(48)))
    assert isinstance(trainer._get_train_sampler(), RepeatedAugmentationSampler)


def test_learning_rate_scales_with_global_batch():
    _, _, args = parse_config(["--base_learning_rate", "5e-4", "--per_device_train_batch_size", "64",
                               "--gradient_accumulation_steps", "3"])
    assert isinstance(args, DistillationConfig)
    # global batch 64 x 3 x 1 process = 192: a missing batch, accumulation or world-size factor changes the value
    assert args.learning_rate == pytest.approx(5e-4 * 192 / 512)


def test_no_weight_decay_on_tokens_norms_and_biases(tmp_path):
    from hf_deit.training.trainer import DistillationTrainer

    model, _ = build_student(ModelConfig(hidden_size=32, num_hidden_layers=1, num_attention_heads=2,
                                         intermediate_size=64, patch_size=8), ID2LABEL)
    _, _, args = parse_config(["--distillation_type", "none", "--output_dir", str(tmp_path)])
    decay = set(DistillationTrainer(model=model, args=args).get_decay_parameter_names(model))
    for name, _ in model.named_parameters():
        excluded = name.endswith(("cls_token", "distillation_token", "position_embeddings", "bias")) or "layernorm" in name
        assert (name not in decay) == excluded, name


def test_plain_vit_student_usual_distillation(sample_dir, tiny_teacher, tmp_path):
    from transformers import AutoModelForImageClassification, ViTForImageClassification

    metrics = main(tiny_args(sample_dir, tmp_path / "vit", "--teacher_model_name_or_path", str(tiny_teacher),
                             "--distillation_token", "false", "--distillation_type", "soft"))
    assert "eval_cls_top1" in metrics and "eval_teacher_top1" in metrics
    assert "eval_distill_top1" not in metrics and "eval_fused_top1" not in metrics
    model = AutoModelForImageClassification.from_pretrained(tmp_path / "vit")
    assert type(model) is ViTForImageClassification


def test_finetune_pretrained_deit_at_another_resolution(sample_dir, tmp_path):
    """A random 'pretrained' DeiT at 64x64 (patch 8, 5 labels) fine-tuned on CIFAR-10 at 32x32."""
    from transformers import DeiTConfig, DeiTForImageClassificationWithTeacher, DeiTImageProcessor, pipeline

    pretrained = tmp_path / "pretrained"
    config = DeiTConfig(image_size=64, patch_size=8, hidden_size=32, num_hidden_layers=2, num_attention_heads=2,
                        intermediate_size=64, num_labels=5)
    DeiTForImageClassificationWithTeacher(config).save_pretrained(pretrained)
    DeiTImageProcessor(size={"height": 64, "width": 64}, crop_size={"height": 64, "width": 64}).save_pretrained(pretrained)

    output = tmp_path / "finetuned"
    main(["--config", "configs/quickstart.yaml", "--dataset_name", str(sample_dir), "--max_train_samples", "32",
          "--max_eval_samples", "16", "--num_train_epochs", "1", "--per_device_train_batch_size", "16",
          "--output_dir", str(output), "--disable_tqdm", "true", "--distillation_type", "none",
          "--teacher_model_name_or_path", "", "--student_model_name_or_path", str(pretrained),
          "--image_size", "32", "--patch_size", "8"])
    model = DeiTForImageClassificationWithTeacher.from_pretrained(output)
    assert model.config.image_size == 32 and model.config.num_labels == 10
    assert model.deit.embeddings.position_embeddings.shape == (1, 4 * 4 + 2, 32)
    processor_config = json.loads((output / "preprocessor_config.json").read_text())
    assert processor_config["size"] == {"height": 32, "width": 32}
    from PIL import Image

    assert pipeline("image-classification", model=str(output))(Image.new("RGB", (50, 40)))[0]["label"] in CIFAR10_NAMES


@pytest.mark.parametrize("distillation_type, teacher_calls_in_training", [("none", 0), ("hard", 4)])
def test_teacher_runs_in_training_only_when_the_loss_reads_it(sample_dir, tiny_teacher, tmp_path, monkeypatch,
                                                              distillation_type, teacher_calls_in_training):
    """With `none` and a teacher configured (for its evaluation column), training skips the teacher's forward:
    it was a third of every step's time for nothing (docs/results/throughput.md)."""
    from hf_deit.training.distill import build_distillation_run

    calls = {"train": 0, "eval": 0}
    original = hf_deit.teacher.TeacherWrapper.forward

    def counting_forward(self, pixel_values):
        calls["train" if torch.is_grad_enabled() else "eval"] += 1
        return original(self, pixel_values)

    monkeypatch.setattr(hf_deit.teacher.TeacherWrapper, "forward", counting_forward)
    run = build_distillation_run(*parse_config(tiny_args(sample_dir, tmp_path, "--teacher_model_name_or_path",
                                                         str(tiny_teacher), "--distillation_type", distillation_type,
                                                         "--max_steps", "4")))
    training_calls = []
    run.trainer.compute_loss_original = run.trainer.compute_loss

    def spy(model, inputs, *args, **kwargs):
        before = calls["train"] + calls["eval"]
        result = run.trainer.compute_loss_original(model, inputs, *args, **kwargs)
        if model.training:
            training_calls.append(calls["train"] + calls["eval"] - before)
        return result

    run.trainer.compute_loss = spy
    run.trainer.train()
    assert sum(training_calls) == teacher_calls_in_training
    metrics = run.trainer.evaluate()
    assert "eval_teacher_top1" in metrics  # evaluation still reports the teacher
