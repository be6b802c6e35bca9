"""Write a student's model card and upload the student (model, processor, card, results, plots) to the Hub.

    python scripts/push_to_hub.py --folder outputs/quickstart --repo_id me/deit-tiny-cifar10 --dry_run
    HF_TOKEN=... python scripts/push_to_hub.py --folder outputs/quickstart --repo_id me/deit-tiny-cifar10

The token comes from HF_TOKEN or `hf auth login`, never from the command line.
"""

from hf_deit.cli.common import run_script
from hf_deit.cli.push import main

if __name__ == "__main__":
    run_script(main)
