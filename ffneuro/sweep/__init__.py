"""Hyperparameter and architecture sweeps on Optuna: a TOML search space (``space``), the
study, its trials and workers (``study``), and the results (``report``). Optuna is an
optional extra (``pip install 'ffneuro[sweep]'``), imported only when a sweep runs."""
