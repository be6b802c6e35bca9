"""How a training script checks the way it was launched (the launches themselves: test_distributed.py)."""

import pytest

from hf_deit.cli import launch

CLEAN_ENV = ("RANK", "LOCAL_RANK", "WORLD_SIZE", "PMI_SIZE", "OMPI_COMM_WORLD_SIZE", "MV2_COMM_WORLD_SIZE",
             "ACCELERATE_USE_CPU", "MASTER_ADDR", "MASTER_PORT")


@pytest.fixture
def clean_env(monkeypatch):
    for name in CLEAN_ENV:
        monkeypatch.delenv(name, raising=False)
    return monkeypatch


def test_accelerates_one_process_for_many_is_refused_with_the_torchrun_command(clean_env):
    launch.prepare_processes(["scripts/distill.py", "--config", "c.yaml"])  # a plain start: nothing to refuse
    clean_env.setenv("ACCELERATE_USE_CPU", "True")
    launch.prepare_processes(["scripts/distill.py"])  # accelerate, one process asked for (no MASTER_ADDR)
    clean_env.setenv("MASTER_ADDR", "127.0.0.1")  # accelerate sets it only when several processes were asked for
    with pytest.raises(launch.SingleProcessCpuLaunch) as refused:
        launch.prepare_processes(["scripts/distill.py", "--config", "my config.yaml"])
    assert "torchrun --nproc_per_node N scripts/distill.py --config 'my config.yaml'" in str(refused.value)


@pytest.mark.parametrize("rank_variable", ["WORLD_SIZE", "RANK", "OMPI_COMM_WORLD_SIZE", "PMI_SIZE"])
def test_ranks_started_by_torchrun_or_mpirun_go_on(clean_env, rank_variable):
    clean_env.setenv("ACCELERATE_USE_CPU", "True")
    clean_env.setenv("MASTER_ADDR", "127.0.0.1")
    clean_env.setenv(rank_variable, "2")
    assert not launch.started_as_one_of_many_cpu_processes()


def test_ranks_without_a_gpu_are_told_to_form_a_cpu_group(clean_env):
    clean_env.setattr(launch, "_has_accelerator", lambda: False)
    clean_env.setenv("WORLD_SIZE", "2")
    clean_env.setenv("LOCAL_RANK", "1")
    launch.use_cpu_group_without_accelerator()
    assert launch.os.environ["ACCELERATE_USE_CPU"] == "true"


def test_ranks_with_a_gpu_are_left_alone(clean_env):
    clean_env.setattr(launch, "_has_accelerator", lambda: True)
    clean_env.setenv("WORLD_SIZE", "2")
    clean_env.setenv("LOCAL_RANK", "0")
    launch.use_cpu_group_without_accelerator()
    assert "ACCELERATE_USE_CPU" not in launch.os.environ
