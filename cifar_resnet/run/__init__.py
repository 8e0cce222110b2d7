"""Running experiments: config, schedules, training, sweeps, crash safety."""
