#!/usr/bin/env python3
"""Training split of the bundled digits models, for distillation.

Writes tests/fixtures/digits/:
    x_train_u8.npy  uint8 N x 1 x 8 x 8, raw pixel values 0..16 (divide by 16 to get
                    the teachers' input scale, as x_test.npy is)
    y_train.npy     int64 N

The split is the one scripts/make_fixtures.py trained the teachers on
(train_test_split(test_size=0.25, random_state=0, stratify=y): 1347 samples), so
x_test.npy stays held out from teachers and students alike. uint8 keeps the file at
86 KB (float32 would be 345 KB).

Usage: python3 scripts/make_distill_data.py   (numpy, scikit-learn)
"""

import os

import numpy as np
from sklearn.datasets import load_digits
from sklearn.model_selection import train_test_split

OUT = os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "tests", "fixtures", "digits")

d = load_digits()
x = d.images.astype(np.uint8)[:, None, :, :]
y = d.target.astype(np.int64)
x_tr, x_te, y_tr, y_te = train_test_split(x, y, test_size=0.25, random_state=0, stratify=y)
# the same split as make_fixtures.py: its x_test is x_te / 16
ref = np.load(os.path.join(OUT, "x_test.npy"))
assert np.array_equal(ref, (x_te / 16.0).astype(np.float32)), "split differs from x_test.npy"
np.save(os.path.join(OUT, "x_train_u8.npy"), x_tr)
np.save(os.path.join(OUT, "y_train.npy"), y_tr)
print(f"wrote {len(x_tr)} training samples")
