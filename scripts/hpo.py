"""Search the distillation hyperparameters of a recipe (optuna, through Trainer.hyperparameter_search).

    pip install -e ".[hpo]"
    python scripts/hpo.py --config configs/hpo/sample.yaml            # resumes the study if it exists
    python scripts/hpo.py --config configs/hpo/sample.yaml &          # a second worker on the same study
"""

from hf_deit.cli.common import run_script
from hf_deit.cli.hpo import main

if __name__ == "__main__":
    run_script(main)
