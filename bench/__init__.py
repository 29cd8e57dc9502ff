"""dlrq's benchmark suite: `bench/run.sh` (installs what it needs) or `python -m bench`."""
