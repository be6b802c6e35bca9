"""Publishing: the model card, the Hub and Space uploads, the evaluation report, plots."""
