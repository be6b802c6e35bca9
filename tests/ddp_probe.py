"""Run under ``torchrun --nproc_per_node 2``: records what each rank sees and ends with.

Not a test module itself (no ``test_`` prefix): tests/test_distributed.py launches it and checks
the files it writes: the training indices of each rank for one epoch, a fingerprint of each
rank's weights after training, and the evaluation metrics gathered over ranks.
"""

import hashlib
import json
import sys
from pathlib import Path

import torch

from hf_deit.config import parse_config
from hf_deit.training.distill import build_distillation_run
from hf_deit.cli.launch import prepare_processes


def weights_fingerprint(model: torch.nn.Module) -> str:
    digest = hashlib.sha256()
    for name, tensor in sorted(model.state_dict().items()):
        digest.update(name.encode())
        digest.update(tensor.detach().cpu().contiguous().numpy().tobytes())
    return digest.hexdigest()


def main() -> None:
    prepare_processes()
    probe_dir = Path(sys.argv[1])
    model_config, data_config, training_args = parse_config(sys.argv[2:])
    run = build_distillation_run(model_config, data_config, training_args)
    trainer = run.trainer
    rank = trainer.args.process_index

    loader = trainer.get_train_dataloader()
    loader.set_epoch(0)
    epoch_indices = [int(i) for batch in loader.batch_sampler for i in batch]

    trainer.train()
    trainer.save_model()
    metrics = trainer.evaluate()
    record = {
        "rank": rank,
        "world_size": trainer.args.world_size,
        "train_indices_epoch0": epoch_indices,
        "weights": weights_fingerprint(trainer.accelerator.unwrap_model(trainer.model)),
        "metrics": metrics,
        "steps": [trainer.state.global_step, trainer.state.max_steps],
    }
    (probe_dir / f"rank{rank}.json").write_text(json.dumps(record))


if __name__ == "__main__":
    main()
