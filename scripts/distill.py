"""Distil a DeiT student from an image-classification teacher.

    accelerate launch scripts/distill.py --config configs/quickstart.yaml [--key value ...]
"""

from hf_deit.cli.common import run_script
from hf_deit.cli.distill import main

if __name__ == "__main__":
    run_script(main)
