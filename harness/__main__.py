"""`python -m harness` is the `harness` command.

Ctrl-C is only noted until the commands are imported: a KeyboardInterrupt raised inside an import can
end in a traceback, or be swallowed by the library being imported (the command then runs anyway).
`main` answers a noted one with one line and exit 130.
"""

import sys

from harness.signals import note_interrupts

_noted = note_interrupts()

from harness.cli import main  # noqa: E402  (after the handler above, on purpose)

sys.exit(main(noted_interrupts=_noted))
