"""spectral-bench harness: data, training, op counting, results and scheduling."""

__version__ = "0.1.0"
