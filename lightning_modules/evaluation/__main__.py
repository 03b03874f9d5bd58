"""``python -m lightning_modules.evaluation TEST.npz [--svm-train TRAIN.npz] ...``: the two-stream
paper's table from saved score files (``fusion_table.main``).

The command lives here, not in ``fusion_table.py``: the package imports that module before
``-m`` would run it, and Python then warns that it runs a second copy.
"""

from lightning_modules.evaluation.fusion_table import main

main()
