"""fastmlp's compute core: @njit functions over flat arrays. No classes; the input
checks' whole-array predicates live here (checks.py), the errors in fastmlp.

Installed as `fastmlp.kernels` (see pyproject.toml). Never imports `fastmlp`.
"""
