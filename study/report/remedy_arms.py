"""Which stiffness remedy a training run used, read from its config (torch-free; shared by the remedies' figures and
tables)."""
from __future__ import annotations

import math

import pandas as pd

from .. import tasks
from ..experiments import REMEDY_ARMS

ARM_LABELS = {"none": "none", "rnode": "RNODE", "steer": "STEER", "weight-decay": "weight decay"}
ARM_MACROS = {"none": "None", "rnode": "Rnode", "steer": "Steer", "weight-decay": "Wd"}
ARM_COLOURS = {"none": "#444444", "rnode": "#0072B2", "steer": "#E69F00", "weight-decay": "#CC79A7"}
FIELDS = sorted({k for arm in REMEDY_ARMS.values() for k in arm})


def with_remedies() -> list[str]:
    """The tasks whose profile has a remedies experiment (in the registry's order)."""
    from ..experiments import build

    names = set(build("full"))
    return [t for t in tasks.TASKS if tasks.experiment(t, "remedies") in names]


def arm_of(row) -> str:
    """The arm of a run (a row of the view): the one whose overrides its config carries; ``none`` without any."""
    on = {k: float(row[k]) for k in FIELDS if k in row and _on(row[k])}
    for name, over in REMEDY_ARMS.items():
        if on == {k: float(v) for k, v in over.items()}:
            return name
    return "other"


def _on(v) -> bool:
    return v is not None and not (isinstance(v, float) and math.isnan(v)) and float(v) != 0.0


def label_arms(df: pd.DataFrame) -> pd.DataFrame:
    df = df.copy()
    df["arm"] = [arm_of(r) for _, r in df.iterrows()] if len(df) else []
    return df
