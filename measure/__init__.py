"""Standalone measurements: timings and errors of layers and steps, outside any training run.

    python -m measure.layers          every spectral layer beside the spatial layer it replaces
    python -m measure.steps           a whole training step and inference, every (method, arch)
    python -m measure.approx_error    spectral vs max pooling reconstruction error (Rippel Fig. 4a)
    python -m measure.realnode_error  float32 error and conditioning of the real-node convolution

Each writes `<results>/_measure/<name>.csv` (`--results-dir`, else $SPECTRAL_BENCH_RESULTS,
else ./results; `--out` names another file), where `python -m harness report` finds it.
Devices, the precision policy, timers and peak memory come from `harness.device`, through
the helpers of `measure.common`, so a measurement times what a run times.
"""
