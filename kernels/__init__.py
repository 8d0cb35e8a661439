"""fastmlp's compute core: @njit functions over flat arrays. No classes, no checks.

Installed as `fastmlp.kernels` (see pyproject.toml). Never imports `fastmlp`.
"""
