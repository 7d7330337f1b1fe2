"""DAVIS evaluation: the official J / F measures, the dataset layout, the ``benchmark`` job.

``vosctl.eval.measures`` (numpy/OpenCV only), ``vosctl.eval.davis`` (folders and masks) and
``vosctl.eval.benchmark`` (``run_benchmark`` / ``run_benchmark_cli``). None of them imports torch
at import time; the benchmark's run mode imports the tracker when it starts.
"""
