"""Experiments: functions returning a typed pgocc.config.ExperimentConfig."""
