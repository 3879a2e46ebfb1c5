"""Test-run settings shared by every test directory (tests/, plugins/*/tests, validation/).

Hypothesis runs **derandomized** by default (profile ``ci``): every run, CI's included,
draws the same examples, so a green suite stays green and a failure reproduces. Failures
Hypothesis has found are also kept as explicit ``@example``s beside their tests. Before
submitting a change, run the random search with more examples::

    python -m pytest --hypothesis-profile=dev tests/property tests/kernels
    ML4T_PROPERTY_EXAMPLES=1000 python -m pytest --hypothesis-profile=dev tests/property

(``ML4T_PROPERTY_EXAMPLES`` sets the example count of the execution-invariant tests, which
set their own.) ``HYPOTHESIS_PROFILE=dev`` in the environment does the same as the option.
"""

from __future__ import annotations

import os

from hypothesis import HealthCheck, settings

settings.register_profile(
    "ci",
    derandomize=True,
    deadline=None,
    print_blob=True,
    suppress_health_check=[HealthCheck.too_slow],
)
settings.register_profile(
    "dev",
    derandomize=False,
    max_examples=500,
    deadline=None,
    print_blob=True,
    suppress_health_check=[HealthCheck.too_slow],
)
settings.load_profile(os.environ.get("HYPOTHESIS_PROFILE", "ci"))
