"""How `accelerate launch` flags and configs become CPU ranks (the launch itself: test_distributed.py)."""

import sys

import pytest

from hf_deit import launch
from hf_deit.launch import CpuLaunch, accelerate_launch_arguments, requested_cpu_launch

CLEAN_ENV = ("RANK", "LOCAL_RANK", "WORLD_SIZE", "PMI_SIZE", "OMPI_COMM_WORLD_SIZE", "MV2_COMM_WORLD_SIZE",
             "ACCELERATE_USE_CPU", "MASTER_ADDR", "MASTER_PORT", launch.RELAUNCHED_ENV)


@pytest.fixture
def clean_env(monkeypatch):
    for name in CLEAN_ENV:
        monkeypatch.delenv(name, raising=False)
    return monkeypatch


@pytest.mark.parametrize("cmdline, expected", [
    (["/venv/bin/python3", "/venv/bin/accelerate", "launch", "--cpu", "s.py", "--x", "1"], ["--cpu", "s.py", "--x", "1"]),
    (["python", "-m", "accelerate.commands.launch", "--num_processes", "2", "s.py"], ["--num_processes", "2", "s.py"]),
    (["python", "-m", "torch.distributed.run", "s.py"], None),
    (["/venv/bin/accelerate", "env"], None),
])
def test_accelerate_launch_arguments_are_found_in_the_parent_command(cmdline, expected):
    assert accelerate_launch_arguments(cmdline) == expected


def test_process_counts_come_from_flags():
    got = requested_cpu_launch(["--cpu", "--num_processes", "4", "--main_process_port", "29999", "s.py", "--lr", "1"])
    assert got == CpuLaunch(num_processes=4, num_machines=1, machine_rank=0, main_process_ip="127.0.0.1",
                            main_process_port=29999)


def test_process_counts_come_from_the_shipped_cpu_ddp_config():
    got = requested_cpu_launch(["--config_file", "configs/accelerate/cpu_ddp.yaml", "scripts/distill.py"])
    assert (got.num_processes, got.num_machines, got.processes_per_machine) == (2, 1, 2)


def test_flags_override_the_config_file():
    got = requested_cpu_launch(["--config_file", "configs/accelerate/cpu_ddp.yaml", "--num_processes", "3", "s.py"])
    assert got.num_processes == 3


def test_torchrun_command_splits_processes_over_machines():
    command = CpuLaunch(num_processes=8, num_machines=2, machine_rank=1, main_process_ip="10.0.0.1",
                        main_process_port=1234).torchrun_command("scripts/distill.py", ["--config", "c.yaml"])
    assert command[:3] == [sys.executable, "-m", "torch.distributed.run"]
    flags = dict(zip(command[3:-3:2], command[4:-3:2]))
    assert flags == {"--nnodes": "2", "--node_rank": "1", "--nproc_per_node": "4", "--master_addr": "10.0.0.1",
                     "--master_port": "1234"}
    assert command[-3:] == ["scripts/distill.py", "--config", "c.yaml"]


def test_relaunch_happens_only_for_accelerates_multi_process_cpu_launch(clean_env):
    clean_env.setattr(launch, "_parent_cmdline",
                      lambda: ["python", "/v/bin/accelerate", "launch", "--cpu", "--num_processes", "2", "s.py"])
    calls = []
    clean_env.setattr(launch.subprocess, "run", lambda command, env: calls.append((command, env)) or
                      type("Done", (), {"returncode": 7})())
    assert launch.spawn_cpu_processes_if_requested(["s.py"]) is None  # not launched by accelerate on CPU
    clean_env.setenv("ACCELERATE_USE_CPU", "True")
    clean_env.setenv("MASTER_ADDR", "127.0.0.1")
    assert launch.spawn_cpu_processes_if_requested(["s.py", "--a"]) == 7  # the group's exit code is ours
    command, env = calls[-1]
    assert "--nproc_per_node" in command and command[command.index("--nproc_per_node") + 1] == "2"
    assert env[launch.RELAUNCHED_ENV] == "1"  # the ranks do not relaunch again
    clean_env.setenv("WORLD_SIZE", "2")  # already a rank
    assert launch.spawn_cpu_processes_if_requested(["s.py"]) is None
    clean_env.delenv("WORLD_SIZE")
    clean_env.setenv("OMPI_COMM_WORLD_SIZE", "2")  # mpirun is in charge
    assert launch.spawn_cpu_processes_if_requested(["s.py"]) is None
    clean_env.delenv("OMPI_COMM_WORLD_SIZE")
    clean_env.setattr(launch, "_parent_cmdline", lambda: ["python", "/v/bin/accelerate", "launch", "--cpu", "s.py"])
    assert launch.spawn_cpu_processes_if_requested(["s.py"]) is None  # one process asked for
    assert len(calls) == 1


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
