"""Anonymised, consistent samples of a production PostgreSQL database for development.

Library entry points (the command line in ``sampling.cli`` is a thin layer over them)::

    config = load_config("sampling/makapix.yaml")
    plan(config, source_url)                       -> Plan
    run(config, source_url, target_url, progress)  -> RunSummary
    verify(config, source_url, target_url)         -> VerifyReport
"""

from sampling.config import SamplingConfig, load_config, with_overrides
from sampling.engine import plan, run
from sampling.errors import ConfigError, SamplingError
from sampling.results import Plan, Progress, RunSummary, VerifyReport
from sampling.verify import verify

__all__ = [
    "ConfigError",
    "Plan",
    "Progress",
    "RunSummary",
    "SamplingConfig",
    "SamplingError",
    "VerifyReport",
    "load_config",
    "plan",
    "run",
    "verify",
    "with_overrides",
]
