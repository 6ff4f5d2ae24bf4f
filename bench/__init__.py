"""Benchmarks of the product against plain baselines; each writes ``bench/results/<name>.json|md``.

Run them from the repository root as modules (``python -m bench.real_photos``), so they import
``posture`` and :mod:`bench.common` like any other package, without editing ``sys.path``.
"""
