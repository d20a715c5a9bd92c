"""`python -m gearcam.runtime` (the program is gearcam/runtime/cli.py).

Loading the runtime's modules takes a third of a second, and a Ctrl-C meanwhile printed a
`KeyboardInterrupt` traceback from deep inside an import. Until the runtime installs its own
handlers (the first thing it does once loaded), SIGINT ends the process as SIGTERM does: quietly,
with nothing started yet to clean up.
"""

import signal
import sys

if __name__ == "__main__":
    if signal.getsignal(signal.SIGINT) is signal.default_int_handler:  # not where it was ignored (nohup, `cmd &`)
        signal.signal(signal.SIGINT, signal.SIG_DFL)
    from gearcam.runtime.cli import main

    sys.exit(main())
