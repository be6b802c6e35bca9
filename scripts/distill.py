"""Distil a DeiT student from an image-classification teacher.

    python scripts/distill.py --config configs/quickstart.yaml [--key value ...]       # one process
    accelerate launch [--config_file configs/accelerate/...] scripts/distill.py --config ...   # many
    python scripts/distill.py --help                                                   # every key
"""

from hf_deit.cli.common import run_script
from hf_deit.cli.distill import main

if __name__ == "__main__":
    run_script(main)
