"""Safe loading: safetensors only (no pickle), no remote code unless asked, no Hub token in anything written."""

from __future__ import annotations

import ast
import json
import logging
import pickle
import shutil
from pathlib import Path

import pytest
import torch
from transformers import PreTrainedModel

from hf_deit.training.checkpointing import load_pretrained_weights, resolve_resume_checkpoint
from hf_deit.config import DataConfig, ModelConfig, parse_config
from hf_deit.cli.distill import main
from hf_deit.modeling import build_student, student_image_processor
from hf_deit.teacher import load_teacher
from hf_deit.config import TeacherModelConfig, TeacherTrainingConfig
from hf_deit.training.teacher_training import build_teacher

from helpers import CIFAR10_NAMES, REPO
from test_end_to_end import tiny_run_args

ID2LABEL = dict(enumerate(CIFAR10_NAMES))
PROCESSOR = student_image_processor(ModelConfig(image_size=32, patch_size=4))
FAKE_TOKEN = "hf_FAKEenvTOKENforLeakTests0123456789"
FAKE_CLI_TOKEN = "hf_FAKEcliTOKENforLeakTests9876543210"


class _PlantMarker:
    """Unpickling this creates a file: proof that a pickle was (or was not) loaded."""

    def __init__(self, marker: Path) -> None:
        self.marker = marker

    def __reduce__(self):
        return (open, (str(self.marker), "w"))


def pickle_only_folder(source: Path, destination: Path) -> Path:
    """A model folder with config.json and a booby-trapped pytorch_model.bin, no safetensors."""
    destination.mkdir(parents=True)
    shutil.copy(source / "config.json", destination)
    for name in ("preprocessor_config.json", "trainer_state.json"):
        if (source / name).exists():
            shutil.copy(source / name, destination)
    with open(destination / "pytorch_model.bin", "wb") as handle:
        pickle.dump({"weights": _PlantMarker(destination / "UNPICKLED")}, handle)
    return destination


@pytest.fixture()
def student_folder(tmp_path) -> Path:
    model, processor = build_student(ModelConfig(hidden_size=32, num_hidden_layers=1, num_attention_heads=2,
                                                 intermediate_size=64, patch_size=8), ID2LABEL)
    model.save_pretrained(tmp_path / "student")
    processor.save_pretrained(tmp_path / "student")
    return tmp_path / "student"


# -- safetensors only -----------------------------------------------------------------------------


def test_every_model_load_in_hf_deit_asks_for_safetensors():
    """Static guard: each `<model>.from_pretrained(...)` in hf_deit passes use_safetensors=True (processors
    and configs are JSON and exempt)."""
    offenders = []
    for path in sorted((REPO / "hf_deit").rglob("*.py")):
        source = path.read_text()
        for node in ast.walk(ast.parse(source)):
            if not (isinstance(node, ast.Call) and isinstance(node.func, ast.Attribute)
                    and node.func.attr == "from_pretrained"):
                continue
            receiver = ast.unparse(node.func.value)
            if "Processor" in receiver or "Config" in receiver:
                continue
            keywords = {k.arg: k.value for k in node.keywords}
            explicit = isinstance(keywords.get("use_safetensors"), ast.Constant) and keywords["use_safetensors"].value
            via_kwargs = None in keywords and '"use_safetensors": True' in source
            if not (explicit or via_kwargs):
                offenders.append(f"{path.relative_to(REPO)}:{node.lineno} {receiver}.from_pretrained")
    assert not offenders, offenders


def test_model_loads_at_runtime_all_pass_use_safetensors(monkeypatch, tiny_teacher, student_folder, tmp_path):
    from hf_deit.modeling import load_student

    seen = []
    original = PreTrainedModel.from_pretrained.__func__

    def spy(cls, *args, **kwargs):
        seen.append((cls.__name__, kwargs.get("use_safetensors")))
        return original(cls, *args, **kwargs)

    monkeypatch.setattr(PreTrainedModel, "from_pretrained", classmethod(spy))
    load_teacher(str(tiny_teacher), CIFAR10_NAMES, PROCESSOR)
    build_student(ModelConfig(student_model_name_or_path=str(student_folder), patch_size=8), ID2LABEL)
    build_teacher(TeacherModelConfig(model_name_or_path=str(tiny_teacher)), ID2LABEL)
    model, _ = build_student(ModelConfig(hidden_size=32, num_hidden_layers=1, num_attention_heads=2,
                                         intermediate_size=64, patch_size=8), ID2LABEL)
    load_pretrained_weights(model, str(student_folder))  # resume and EMA reload
    load_student(str(student_folder), device="cpu")
    assert len(seen) >= 5 and all(flag is True for _, flag in seen), seen


@pytest.mark.parametrize("loader", ["teacher", "student", "teacher fine-tuning", "resume"])
def test_pickle_only_folder_is_refused_without_unpickling(loader, tiny_teacher, student_folder, tmp_path):
    source = student_folder if loader in ("student", "resume") else tiny_teacher
    folder = pickle_only_folder(source, tmp_path / "pickled")
    if loader == "teacher":
        with pytest.raises(OSError, match=r"(?s)Could not load the teacher.*saved as safetensors"):
            load_teacher(str(folder), CIFAR10_NAMES, PROCESSOR)
    elif loader == "student":
        with pytest.raises(OSError, match=r"(?s)Could not load .*student checkpoint.*pickled pytorch_model.bin files are refused"):
            build_student(ModelConfig(student_model_name_or_path=str(folder), patch_size=8), ID2LABEL)
    elif loader == "teacher fine-tuning":
        with pytest.raises(OSError, match=r"(?s)Could not load .*pickled pytorch_model.bin files are refused"):
            build_teacher(TeacherModelConfig(model_name_or_path=str(folder)), ID2LABEL)
    else:
        with pytest.raises(ValueError, match=r"pickled weights \(pytorch_model.bin\).*refusing"):
            resolve_resume_checkpoint(str(folder), str(tmp_path))
    assert not (folder / "UNPICKLED").exists()


# -- remote code ----------------------------------------------------------------------------------


def test_trust_remote_code_is_off_by_default():
    model_config, _, _ = parse_config([])
    assert model_config.trust_remote_code is False
    teacher_config, _, _ = parse_config([], (TeacherModelConfig, DataConfig, TeacherTrainingConfig))
    assert teacher_config.trust_remote_code is False


def test_custom_code_is_refused_unless_trusted(tiny_teacher, tmp_path):
    folder = tmp_path / "custom"
    shutil.copytree(tiny_teacher, folder)
    config = json.loads((folder / "config.json").read_text())
    config.update(model_type="evil_net", auto_map={"AutoConfig": "custom.CustomConfig",
                                                   "AutoModelForImageClassification": "custom.CustomModel"})
    (folder / "config.json").write_text(json.dumps(config))
    (folder / "custom.py").write_text(
        f"import pathlib\npathlib.Path({str(folder / 'EXECUTED')!r}).touch()\n"
        "from transformers import RegNetConfig as CustomConfig, RegNetForImageClassification as CustomModel\n"
    )
    with pytest.raises(ValueError, match="trust_remote_code=True"):
        load_teacher(str(folder), CIFAR10_NAMES, PROCESSOR)
    with pytest.raises(ValueError, match="trust_remote_code=True"):
        build_teacher(TeacherModelConfig(model_name_or_path=str(folder)), ID2LABEL)
    assert not (folder / "EXECUTED").exists()


def test_turning_trust_remote_code_on_warns(tiny_teacher, caplog):
    with caplog.at_level(logging.WARNING):
        load_teacher(str(tiny_teacher), CIFAR10_NAMES, PROCESSOR, trust_remote_code=True)
        build_teacher(TeacherModelConfig(model_name_or_path=str(tiny_teacher), trust_remote_code=True), ID2LABEL)
    warnings = [r.getMessage() for r in caplog.records if "trust_remote_code=True" in r.getMessage()]
    assert len(warnings) == 2 and all(str(tiny_teacher) in w for w in warnings)


# -- Hub tokens -----------------------------------------------------------------------------------


def test_hub_token_never_reaches_files_or_logs(monkeypatch, capfd, sample_dir, tiny_teacher, tmp_path):
    monkeypatch.setenv("HF_TOKEN", FAKE_TOKEN)
    output_dir = tmp_path / "run"
    main(tiny_run_args(sample_dir, output_dir, "--teacher_model_name_or_path", str(tiny_teacher),
                       "--hub_token", FAKE_CLI_TOKEN, "--save_strategy", "steps", "--save_steps", "2",
                       "--ema_decay", "0.9", "--log_level", "info", "--disable_tqdm", "false"))
    captured = capfd.readouterr()
    written = sorted(p for p in output_dir.rglob("*") if p.is_file())
    names = {p.name for p in written}
    assert {"training_args.bin", "trainer_state.json", "config.json", "results.json", "all_results.json",
            "model.safetensors", "optimizer.pt", "rng_state.pth"} <= names
    assert len([p for p in written if p.name == "training_args.bin"]) >= 3  # final folder + 2 checkpoints
    for token in (FAKE_TOKEN, FAKE_CLI_TOKEN):
        for variant in (token.encode(), token.encode("utf-16-le")):
            leaks = [str(p.relative_to(output_dir)) for p in written if variant in p.read_bytes()]
            assert not leaks, f"token found in {leaks}"
        assert token not in captured.out and token not in captured.err
    args = torch.load(output_dir / "training_args.bin", weights_only=False)
    assert args.hub_token is None  # pickled without it; the live run still had it for uploads
