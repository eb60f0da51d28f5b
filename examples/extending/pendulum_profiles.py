# The pendulum's lines in study/profiles.py's TASK_SPEC, one per profile: its seeds, its protocol's overrides and
# its work-precision sweep.  FULL's entry goes into TASK_SPEC["full"], QUICK's into TASK_SPEC["quick"].
FULL = {"pendulum": {"seeds": 5, "protocol": {},
                     "wp": {"train_variant": "rk4", "fields": ["initial", "trained"], "batch": 20,
                            "steps": [3, 9, 18, 36, 72], "tolerances": [1e-2, 1e-4, 1e-6, 1e-8], "repeats": 5}}}
QUICK = {"pendulum": {"seeds": 1, "protocol": {"iterations": 4, "n_points": 250, "eval_every": 2, "grid": 16},
                      "wp": {"train_variant": "rk4", "fields": ["trained"], "batch": 8, "steps": [3, 9],
                             "tolerances": [1e-3, 1e-5], "repeats": 1, "reference_steps": 128}}}
