"""Train or fine-tune an image-classification teacher with the stock Trainer.

    accelerate launch scripts/train_teacher.py --config configs/teacher_cifar10_regnet.yaml
"""

from hf_deit.teacher_training import main

if __name__ == "__main__":
    main()
