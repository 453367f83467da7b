"""Exit codes of every command: one table of what each code means, and which codes each command uses.

Every ``--help`` ends with its command's block, built from here by `exit_codes_help` (`harness.cli`
appends it), so the meanings are written once. A command says only where its code means something
more specific than the shared meaning (``None`` takes the shared one). A test checks that every
command and subcommand the CLI registers has its entry.
"""

from __future__ import annotations

import shutil
import textwrap

from harness.errors import EXIT_INTERRUPTED, EXIT_OK, EXIT_RUNTIME, EXIT_USAGE, EXIT_VERDICT_FAILED

__all__ = ["MEANINGS", "COMMAND_EXIT_CODES", "exit_codes_help"]

MEANINGS: dict[int, str] = {
    EXIT_OK: "success",
    EXIT_VERDICT_FAILED: "a verdict failed: an SLA tier missed, a regression, a failed requirement (each listed)",
    EXIT_USAGE: "bad usage, config, spec or experiment file (the message names the field and the value), "
                "or a missing extra",
    EXIT_RUNTIME: "the harness could not do the job (for example a deployment that never became Ready)",
    EXIT_INTERRUPTED: "interrupted (Ctrl-C, or SIGTERM where the command tears down on it)",
}

_ALL = {EXIT_OK: None, EXIT_VERDICT_FAILED: None, EXIT_USAGE: None, EXIT_RUNTIME: None, EXIT_INTERRUPTED: None}
_NO_VERDICT = {EXIT_OK: None, EXIT_USAGE: None, EXIT_RUNTIME: None, EXIT_INTERRUPTED: None}  # runs, never judges
_OFFLINE = {EXIT_OK: None, EXIT_USAGE: None, EXIT_INTERRUPTED: None}  # reads and writes files only
_BENCH = "the benchmark could not run"

# "command" or "command subcommand" -> the codes it exits with (None: the shared meaning)
COMMAND_EXIT_CODES: dict[str, dict[int, str | None]] = {
    "": _ALL,  # harness itself: each command's --help says which codes it uses
    "bench": _ALL,
    "bench service": {EXIT_OK: None, EXIT_VERDICT_FAILED: "a target missed (with --check)", EXIT_USAGE: None,
                      EXIT_RUNTIME: _BENCH, EXIT_INTERRUPTED: None},
    "bench stall": {EXIT_OK: "every stall within the tolerance", EXIT_VERDICT_FAILED: "a stall was not",
                    EXIT_USAGE: None, EXIT_RUNTIME: _BENCH, EXIT_INTERRUPTED: None},
    "bench fuzz": {EXIT_OK: "every check held", EXIT_VERDICT_FAILED: "a check did not (each listed)",
                   EXIT_USAGE: None, EXIT_RUNTIME: _BENCH, EXIT_INTERRUPTED: None},
    "bench netfault": {EXIT_OK: "each fault did what it claims, within its tolerance",
                       EXIT_VERDICT_FAILED: "a fault missed its claim (each listed)", EXIT_USAGE: None,
                       EXIT_RUNTIME: _BENCH, EXIT_INTERRUPTED: None},
    "bench loadgen": {EXIT_OK: "N processes kept up with at least --min-ratio times one process's rate",
                      EXIT_VERDICT_FAILED: "they did not (each count's figure listed)", EXIT_USAGE: None,
                      EXIT_RUNTIME: _BENCH, EXIT_INTERRUPTED: None},
    "bench ab": {EXIT_OK: "no regression of B against A beyond run-to-run noise (inconclusive is not a failure)",
                 EXIT_VERDICT_FAILED: "B regressed against A (each metric listed)", EXIT_USAGE: None,
                 EXIT_RUNTIME: _BENCH, EXIT_INTERRUPTED: None},
    "bench compare": {EXIT_OK: "compare met its false-alarm and detection targets",
                      EXIT_VERDICT_FAILED: "it missed one (each listed)", EXIT_USAGE: None, EXIT_RUNTIME: _BENCH,
                      EXIT_INTERRUPTED: None},
    "capacity": {**_NO_VERDICT, EXIT_RUNTIME: "the check could not run, or no configuration met the SLO"},
    "chaos": _ALL,
    "chaos run": {EXIT_OK: "the tier was met", EXIT_VERDICT_FAILED: "the tier was not met (every violation listed)",
                  EXIT_USAGE: None, EXIT_RUNTIME: None, EXIT_INTERRUPTED: None},
    "chaos matrix": {EXIT_OK: "every cell met its tier (inconclusive cells are printed, not failures)",
                     EXIT_VERDICT_FAILED: "a cell did not (each listed)", EXIT_USAGE: None, EXIT_RUNTIME: None,
                     EXIT_INTERRUPTED: "interrupted: the cells that finished are written"},
    "chaos validate": {EXIT_OK: "every experiment is valid", EXIT_USAGE: "one is not (the field named)",
                       EXIT_INTERRUPTED: None},
    "chaos spec": _OFFLINE,
    "cleanup": {EXIT_OK: "nothing stale is left (removed, or there was none)", EXIT_USAGE: None,
                EXIT_RUNTIME: "something stale could not be removed (each named on stderr)", EXIT_INTERRUPTED: None},
    "compare": {EXIT_OK: "no regression beyond run-to-run noise (inconclusive is printed, not a failure)",
                EXIT_VERDICT_FAILED: "a regression (each listed)", EXIT_USAGE: None, EXIT_RUNTIME: None,
                EXIT_INTERRUPTED: None},
    "load": {**_NO_VERDICT, EXIT_OK: "the load ran; its SLO verdict is printed and recorded in run.json, not the exit code"},
    "preflight": {EXIT_OK: "every requirement met (a missing GPU is absent, not a failure, unless --require-gpu)",
                  EXIT_VERDICT_FAILED: "a requirement failed (each listed)", EXIT_USAGE: None, EXIT_INTERRUPTED: None},
    "render": _OFFLINE,
    "report": {EXIT_OK: None, EXIT_USAGE: None, EXIT_RUNTIME: "the saved data could not be read into a report",
               EXIT_INTERRUPTED: None},
    "run": {EXIT_OK: "every stage completed and every verdict passed",
            EXIT_VERDICT_FAILED: "a verdict failed (an SLA tier, a regression against --baseline, a preflight "
                                 "requirement: the job then stops early)",
            EXIT_USAGE: None,
            EXIT_RUNTIME: "a stage could not run (the others still ran and the report was written)",
            EXIT_INTERRUPTED: "interrupted (every deployment torn down, the report of what finished written)"},
    "serve": {EXIT_OK: "drained and stopped after SIGTERM or SIGINT", EXIT_USAGE: None,
              EXIT_RUNTIME: "could not listen, or the model failed to load"},
    "sweep": {**_NO_VERDICT, EXIT_INTERRUPTED: "interrupted: the points measured so far are written"},
    "up": {EXIT_OK: "stayed up, then tore down (after --for-s, SIGINT or SIGTERM)", EXIT_USAGE: None,
           EXIT_RUNTIME: "the deployment failed or never became Ready"},
}


def exit_codes_help(command: str, width: int | None = None) -> str:
    """Return the ``exit codes:`` block of ``command`` ("" for harness itself, "chaos run" for a subcommand),
    wrapped to ``width`` columns (default: the terminal's, as argparse wraps the rest of the help).

    A command missing from `COMMAND_EXIT_CODES` gets every code with its shared meaning.
    """
    width = width or max(40, min(shutil.get_terminal_size().columns, 120) - 2)
    codes = COMMAND_EXIT_CODES.get(command, _ALL)
    lines = ["exit codes:"]
    for code in sorted(codes):
        lines += textwrap.wrap(codes[code] or MEANINGS[code], width, initial_indent=f"  {code:<5}",
                               subsequent_indent=" " * 7)
    return "\n".join(lines)
