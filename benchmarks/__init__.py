"""Speed benchmarks: ``python -m benchmarks.verify`` measures /verify against a frozen baseline.

These modules call ``verification`` (and, for the baseline, ``face_alignment`` and ``backbones``)
and run ``api.py`` as a subprocess; they never import the HTTP layer or the tests.
"""
