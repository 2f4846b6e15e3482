"""Reports over finished run folders: the comparison table, its curves and HTML page, and paired
bootstrap intervals; the commands are `python -m bljust.compare` and `python -m bljust.wandb_report`."""
