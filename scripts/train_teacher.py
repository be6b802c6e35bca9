"""Train or fine-tune an image-classification teacher with the stock Trainer.

    accelerate launch scripts/train_teacher.py --config configs/teacher_cifar10_resnet.yaml
"""

from hf_deit.cli.common import run_script
from hf_deit.cli.train_teacher import main

if __name__ == "__main__":
    run_script(main)
