"""What the command lines of ``sampling`` and ``ops`` share, so both behave alike.

- :mod:`cli_support.commands` — exit codes (:class:`ExitCode`) and the subcommand registry
  (:class:`Command`, :func:`run_commands`) that maps known exceptions to them;
- :mod:`cli_support.database_urls` — PostgreSQL URLs: masking passwords in what is printed, refusing a
  malformed URL in our words;
- :mod:`cli_support.readiness` — waiting for a database that was just started;
- :mod:`cli_support.validation` — one wording of a configuration's validation errors, a line per key.

It depends on neither package, so ``ops`` does not need the sampler.
"""
