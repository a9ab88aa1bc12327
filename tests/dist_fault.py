"""Run by test_train.py under torchrun: a fault on one rank in the middle of training.

`reader`: rank 1 cannot read an image of its third batch (as if the file broke mid-run);
`writer`: rank 0 cannot write its checkpoint (a full disk). The other rank must not hang.
"""

import os
import sys

import reid.data
import reid.engine
from reid.config import run
from reid.errors import ReidError

fault, rank = sys.argv[1], int(os.environ["RANK"])
if fault == "reader" and rank == 1:
    served = {"n": 0}
    original = reid.data.PairDataset.__getitem__

    def failing(self, key):
        served["n"] += 1
        if served["n"] > 8:
            raise ReidError("cannot read image crop_0042.jpeg: broken data stream")
        return original(self, key)

    reid.data.PairDataset.__getitem__ = failing
if fault == "writer" and rank == 0:
    def full_disk(obj, path):
        raise ReidError(f"cannot write {path}: no space left on device")

    reid.engine.save_atomic = full_disk
run(reid.engine.fit, reid.engine.TrainConfig, sys.argv[2:])
