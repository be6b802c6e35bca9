"""Model card (metadata round trip through huggingface_hub) and the upload, against a stand-in HfApi."""

import json
import logging
import shutil

import pytest
from huggingface_hub import ModelCard, metadata_load
from huggingface_hub.repocard_data import model_index_to_eval_results
from huggingface_hub.utils import filter_repo_objects

from hf_deit.cli.push import main as push_main
from hf_deit.heads import STUDENT_HEADS
from hf_deit.config import DataConfig, DistillationConfig, ModelConfig
from hf_deit.publish import push
from hf_deit.publish.recipe import RUN_CONFIG_FILE, save_run_config
from hf_deit.publish import card as model_card

MODEL_INDEX_NAMES = {head.key: head.index_name for head in STUDENT_HEADS}
from tiny_student import tiny_student  # noqa: F401  (fixture)

SECRET = "hf_test_NotARealTokenButTreatItAsOne"
EXPECTED_UPLOAD = {
    "README.md", "config.json", "model.safetensors", "preprocessor_config.json", "all_results.json",
    "results.json", "results.md", "trainer_state.json", "training_curves.png", "distillation_config.json",
}


@pytest.fixture
def folder(tiny_student, tmp_path):
    """A copy of a finished run, plus a checkpoint sub-folder that must never be uploaded."""
    copy = tmp_path / "student"
    shutil.copytree(tiny_student, copy)
    (copy / "checkpoint-4").mkdir()
    for name in ("model.safetensors", "optimizer.pt", "training_args.bin", "trainer_state.json"):
        (copy / "checkpoint-4" / name).write_bytes(b"x")
    return copy


def test_card_metadata_round_trip(folder):
    results = json.loads((folder / "all_results.json").read_text())
    path = model_card.write_model_card(folder, repo_id="me/deit-tiny-test", dataset_id="uoft-cs/cifar10",
                                teacher="me/regnet-cifar10", base_model="facebook/deit-tiny-distilled-patch16-224")
    card = ModelCard.load(path)
    assert card.data.library_name == "transformers" and card.data.pipeline_tag == "image-classification"
    assert {"deit", "distillation", "image-classification"} <= set(card.data.tags)
    assert card.data.datasets == ["uoft-cs/cifar10"]
    assert card.data.base_model == "facebook/deit-tiny-distilled-patch16-224"
    assert card.data.to_dict()["teacher"] == "me/regnet-cifar10"

    metadata = metadata_load(path)
    model_name, eval_results = model_index_to_eval_results(metadata["model-index"])
    assert model_name == "deit-tiny-test"
    by_name = {result.metric_name: result for result in eval_results}
    assert set(by_name) == set(MODEL_INDEX_NAMES.values())
    for head, metric_name in MODEL_INDEX_NAMES.items():
        result = by_name[metric_name]
        assert result.task_type == "image-classification" and result.metric_type == "accuracy"
        assert result.metric_value == pytest.approx(results[f"eval_{head}_top1"], abs=1e-4)

    text = card.text
    for section in ("## Training recipe", "## Results", "## Usage", "## Limitations"):
        assert section in text
    assert 'pipeline("image-classification", model="me/deit-tiny-test")' in text
    assert "hard" in text and "me/regnet-cifar10" in text and "| teacher |" in text
    assert "![training loss](training_curves.png)" in text and (folder / "training_curves.png").is_file()


def test_card_uses_the_full_evaluation_and_flags_the_jpeg_copy(folder, sample_dir):
    from hf_deit.config import DataConfig
    from hf_deit.data.datasets import load_split
    from hf_deit.data.facts import describe_dataset

    split = load_split(DataConfig(dataset_name=str(sample_dir)), "test")
    evaluation = {"dataset": str(sample_dir), "split": "test", "num_images": 1000, "teacher": "models/x",
                  "dataset_facts": describe_dataset(str(sample_dir), split.dataset, split.image_column),
                  "metrics": {"cls_top1": 0.5, "cls_top5": 0.9, "distill_top1": 0.6, "distill_top5": 0.95,
                              "fused_top1": 0.625, "fused_top5": 0.97, "cls_distill_agreement": 0.8}}
    (folder / "evaluation.json").write_text(json.dumps(evaluation))
    card = ModelCard.load(model_card.write_model_card(folder))
    assert card.data.datasets == ["uoft-cs/cifar10"]  # the Hub dataset the local copy stands for (its card says)
    _, eval_results = model_index_to_eval_results(card.data.to_dict()["model-index"])
    fused = next(r for r in eval_results if r.metric_name == MODEL_INDEX_NAMES["fused"])
    assert fused.metric_value == 0.625 and fused.dataset_split == "test" and fused.dataset_type == "uoft-cs/cifar10"
    assert "JPEG (quality 75)" in card.text and "not comparable" in card.text
    assert "62.50" in card.text and "1000 images" in card.text


def test_card_never_unpickles_training_args(folder, monkeypatch):
    import pickle

    import torch

    def refuse(*args, **kwargs):
        raise AssertionError("training_args.bin must not be unpickled")

    monkeypatch.setattr(torch, "load", refuse)
    monkeypatch.setattr(pickle, "load", refuse)
    monkeypatch.setattr(pickle, "loads", refuse)
    (folder / "training_args.bin").write_bytes(b"not even a pickle")
    assert model_card.write_model_card(folder, repo_id="me/x").is_file()


def test_run_config_keeps_the_recipe_and_never_the_token(tmp_path):
    model = ModelConfig(teacher_model_name_or_path="me/teacher")
    data = DataConfig(dataset_name="uoft-cs/cifar10")
    training = DistillationConfig(output_dir=str(tmp_path / "run"), distillation_type="soft", distillation_tau=3.0,
                                  learning_rate=1e-3, hub_token=SECRET, label_smoothing_factor=0.1)
    path = save_run_config(str(tmp_path), model, data, training)
    text = open(path).read()
    assert SECRET not in text
    saved = json.loads(text)
    assert saved["training"]["distillation_tau"] == 3.0
    assert saved["model"]["teacher_model_name_or_path"] == "me/teacher"
    # Every key of the dataclasses, not a hand-kept list: label smoothing and the attention kernel reach the card.
    assert saved["training"]["label_smoothing_factor"] == 0.1 and saved["model"]["attn_implementation"] == "sdpa"
    assert {"distillation_tau", "label_smoothing_factor", "learning_rate"} <= set(saved["changed"]["training"])
    assert "hub_token" not in saved["changed"]["training"] and "distillation_alpha" not in saved["changed"]["training"]


def test_push_dry_run_lists_the_expected_files(folder, capsys):
    (folder / "README.md").unlink(missing_ok=True)
    (folder / "training_curves.png").unlink(missing_ok=True)
    plan = push_main(["--folder", str(folder), "--repo_id", "me/deit-tiny-test", "--dry_run"])
    names = {name for name, _ in plan}
    assert names == EXPECTED_UPLOAD
    assert "training_args.bin" not in names and not any(name.startswith("checkpoint") for name in names)
    generated = {"README.md", "training_curves.png"}  # rendered into a scratch folder, never into the student's
    assert all(size == (folder / name).stat().st_size for name, size in plan if name not in generated)
    assert all(size > 0 for name, size in plan if name in generated)
    assert not any((folder / name).exists() for name in generated)
    printed = capsys.readouterr().out
    assert "Would upload 10 files" in printed and "model.safetensors" in printed and "training_args.bin" not in printed


@pytest.fixture
def stand_in_hub(monkeypatch):
    """A stand-in for ``huggingface_hub.HfApi`` (the Hub is unreachable here): records every call."""
    calls = []

    class StandInHfApi:
        def __init__(self, token=None):
            calls.append(("init", {"token": token}))

        def __getattr__(self, name):
            return lambda **kwargs: calls.append((name, kwargs))

    monkeypatch.setattr(push, "HfApi", StandInHfApi)
    return calls


def test_push_calls_hub_api_stand_in(folder, monkeypatch, capsys, caplog):
    calls = []

    class StandInHfApi:
        def __init__(self, token=None):
            calls.append(("init", {"token": token}))

        def create_repo(self, **kwargs):
            calls.append(("create_repo", kwargs))

        def upload_folder(self, **kwargs):
            calls.append(("upload_folder", kwargs))

    monkeypatch.setattr(push, "HfApi", StandInHfApi)
    caplog.set_level(logging.DEBUG)
    plan = push.push_folder(folder, "me/deit-tiny-test", private=True, token=SECRET)

    assert [name for name, _ in calls] == ["init", "create_repo", "upload_folder"]
    assert calls[0][1] == {"token": SECRET}
    create, upload = calls[1][1], calls[2][1]
    assert create["repo_id"] == "me/deit-tiny-test" and create["private"] is True and create["exist_ok"] is True
    assert upload["repo_id"] == "me/deit-tiny-test" and upload["folder_path"] == str(folder)
    assert upload["allow_patterns"] == push.ALLOW_PATTERNS and upload["ignore_patterns"] == push.IGNORE_PATTERNS
    # What huggingface_hub would upload with those patterns is exactly the plan, without pickles or checkpoints.
    files = sorted(p.relative_to(folder).as_posix() for p in folder.glob("**/*") if p.is_file())
    chosen = set(filter_repo_objects(files, allow_patterns=upload["allow_patterns"],
                                     ignore_patterns=upload["ignore_patterns"]))
    assert chosen == {name for name, _ in plan} == EXPECTED_UPLOAD
    # The token went to HfApi only: not printed, logged or written into the folder.
    assert SECRET not in capsys.readouterr().out + caplog.text
    assert not any(SECRET.encode() in p.read_bytes() for p in folder.glob("**/*") if p.is_file())


def test_push_refuses_a_folder_without_weights(folder):
    (folder / "model.safetensors").unlink()
    with pytest.raises(FileNotFoundError, match="model.safetensors"):
        push.push_folder(folder, "me/x", dry_run=True)


def test_reported_accuracy_from_folder_and_card(folder, tmp_path):
    results = json.loads((folder / "all_results.json").read_text())
    assert model_card.reported_accuracy(str(folder))["metrics"]["fused_top1"] == results["eval_fused_top1"]
    model_card.write_model_card(folder, repo_id="me/x", dataset_id="uoft-cs/cifar10")
    card_only = tmp_path / "card-only"
    card_only.mkdir()
    shutil.copy(folder / "README.md", card_only / "README.md")
    shutil.copy(folder / "config.json", card_only / "config.json")
    reported = model_card.reported_accuracy(str(card_only))
    assert reported["metrics"]["cls_top1"] == pytest.approx(results["eval_cls_top1"], abs=1e-4)
    assert model_card.reported_accuracy(str(tmp_path / "nothing")) == {}


def test_space_push_is_one_commit_that_deletes_stale_files(monkeypatch):
    calls = []

    class StandInHfApi:
        def __init__(self, token=None):
            pass

        def __getattr__(self, name):
            return lambda **kwargs: calls.append((name, kwargs))

        def list_repo_files(self, **kwargs):
            calls.append(("list_repo_files", kwargs))
            return [".gitattributes", "app.py", "hf_deit/hub.py", "README.md"]  # hf_deit/hub.py: from an old push

    monkeypatch.setattr(push, "HfApi", StandInHfApi)
    plan = {name for name, _ in push.push_space("me/deit-demo", "me/deit-tiny", dry_run=True)}
    assert {"app.py", "requirements.txt", "README.md", "examples/cat.png", "hf_deit/modeling.py",
            "hf_deit/publish/viz.py", "hf_deit/publish/card.py", "hf_deit/publish/templates/model_card.md"} <= plan
    assert not any("__pycache__" in name or name.endswith(".pyc") for name in plan)
    assert not calls  # a dry run sends nothing

    push.push_space("me/deit-demo", "me/deit-tiny", private=True)
    assert [name for name, _ in calls] == ["create_repo", "add_space_variable", "list_repo_files", "create_commit"]
    create = calls[0][1]
    assert create["repo_type"] == "space" and create["space_sdk"] == "gradio" and create["private"] is True
    assert calls[1][1] == {"repo_id": "me/deit-demo", "key": "MODEL_ID", "value": "me/deit-tiny"}
    operations = calls[3][1]["operations"]
    added = {op.path_in_repo for op in operations if type(op).__name__ == "CommitOperationAdd"}
    deleted = {op.path_in_repo for op in operations if type(op).__name__ == "CommitOperationDelete"}
    assert added == plan and deleted == {"hf_deit/hub.py"}



def test_card_from_the_run_recipe_written_elsewhere(folder, tiny_teacher, monkeypatch, tmp_path):
    """The recipe keeps what a relative local path meant, so the card is right from any directory."""
    from hf_deit.data.datasets import load_image_classification_data

    model = ModelConfig(teacher_model_name_or_path=str(tiny_teacher))
    data = DataConfig(dataset_name="data/cifar10-sample", rand_augment="rand-m9-mstd0.5-inc1")
    training = DistillationConfig(output_dir=str(tmp_path / "run"), distillation_type="soft", distillation_tau=3.0,
                                  learning_rate=5e-4, num_train_epochs=12, per_device_train_batch_size=64,
                                  weight_decay=0.05, mixup_alpha=0.8)
    save_run_config(str(folder), model, data, training, load_image_classification_data(data))  # from the repo root
    monkeypatch.chdir(tmp_path)
    card = ModelCard.load(model_card.write_model_card(folder, repo_id="me/x"))
    assert card.data.datasets == ["uoft-cs/cifar10"]  # the Hub dataset the local copy stands for
    assert "teacher" not in card.data.to_dict()  # a local teacher: not Hub metadata
    _, eval_results = model_index_to_eval_results(card.data.to_dict()["model-index"])
    assert eval_results[0].dataset_type == "uoft-cs/cifar10"
    assert eval_results[0].dataset_name == "CIFAR-10 sample (hf-deit)"
    assert "trained and evaluated on a local copy (`data/cifar10-sample`)" in card.text and "not comparable" in card.text
    assert "soft (alpha 0.5, tau 3.0, KL batchmean)" in card.text and "peak learning rate 0.0005" in card.text
    assert "12 epochs" in card.text and "random crops (padding 4) and horizontal flips" in card.text
    assert "**Regularisation**: RandAugment `rand-m9-mstd0.5-inc1`, Mixup 0.8." in card.text
    assert "distillation_tau: 3.0" in card.text and "num_train_epochs: 12" in card.text  # the full recipe, as YAML


def test_distill_push_to_hub_publishes_through_hub_module(sample_dir, tiny_teacher, tmp_path, stand_in_hub):
    from hf_deit.cli.distill import main
    from helpers import TINY_STUDENT_ARGS

    calls = stand_in_hub
    output_dir = tmp_path / "run"
    main(["--config", "configs/quickstart.yaml", "--dataset_name", str(sample_dir),
          "--teacher_model_name_or_path", str(tiny_teacher), "--max_train_samples", "32", "--max_eval_samples", "16",
          "--num_train_epochs", "1", "--per_device_train_batch_size", "16", "--output_dir", str(output_dir),
          "--disable_tqdm", "true", "--push_to_hub", "true", "--hub_model_id", "me/deit-hook",
          "--hub_private_repo", "true", *TINY_STUDENT_ARGS])
    assert [name for name, _ in calls] == ["init", "create_repo", "upload_folder"]
    assert calls[1][1]["repo_id"] == "me/deit-hook" and calls[1][1]["private"] is True
    assert (output_dir / RUN_CONFIG_FILE).is_file() and (output_dir / "README.md").is_file()
    assert (output_dir / "training_args.bin").is_file()
    assert "training_args.bin" not in {name for name, _ in push.upload_plan(output_dir)}
    assert "hard" in (output_dir / "README.md").read_text()


def test_re_push_keeps_a_hand_edit_made_locally_or_on_the_hub(folder, stand_in_hub, monkeypatch):
    import hf_deit.cli.push as push_cli

    push_main(["--folder", str(folder), "--repo_id", "me/deit-tiny-test"])
    card = folder / "README.md"
    card.write_text(card.read_text() + "\n## Local notes\n\nEdited in the folder.\n")
    push_main(["--folder", str(folder), "--repo_id", "me/deit-tiny-test"])
    assert "Edited in the folder." in card.read_text() and card.read_text().count("<!-- hf-deit:begin results -->") == 1

    on_the_hub = card.read_text().replace("## Local notes", "## Notes written on the Hub")
    monkeypatch.setattr(push_cli, "published_card_text", lambda repo_id: on_the_hub)
    push_main(["--folder", str(folder), "--repo_id", "me/deit-tiny-test"])
    assert "## Notes written on the Hub" in card.read_text()  # the published card wins over the folder's copy


def test_replace_section_adds_once_then_replaces():
    text = model_card.replace_section("# Card\n\nHand-written.\n", "size-speed", "| a |")
    assert text.startswith("# Card\n\nHand-written.") and "<!-- hf-deit:begin size-speed -->\n| a |\n" in text
    again = model_card.replace_section(text, "size-speed", "| b |")
    assert again.count("hf-deit:begin size-speed") == 1 and "| b |" in again and "| a |" not in again


def test_card_of_a_run_stopped_at_its_budget_tells_epochs_trained_and_the_training_clock(folder):
    """A budgeted run may stop before its schedule ends, and may span resumed sessions: the card says how many
    epochs it trained of how many scheduled, and the training clock's total rather than the last session's."""
    recipe = json.loads((folder / RUN_CONFIG_FILE).read_text())
    recipe["training"]["num_train_epochs"] = 30.18
    recipe["model"]["patch_dropout"] = 0.5
    (folder / RUN_CONFIG_FILE).write_text(json.dumps(recipe))
    state = json.loads((folder / "trainer_state.json").read_text())
    (folder / "trainer_state.json").write_text(json.dumps({**state, "epoch": 27.372, "global_step": 5365,
                                                           "max_steps": 5916}))
    results = json.loads((folder / "all_results.json").read_text())
    (folder / "all_results.json").write_text(json.dumps({**results, "train_runtime_s": 4765.7, "train_wall_s": 5400.1}))
    text = ModelCard.load(model_card.write_model_card(folder, repo_id="me/x")).text
    assert "27.37 of 30.18 scheduled epochs (stopped early)" in text and "5400 s of training steps" in text
    assert "4766 s" not in text and "patch dropout 0.5" in text
