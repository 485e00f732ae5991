"""A process that stops when asked, however it was started.

A shell without job control (a script, `nohup chaffee dev &`) starts a background command with
SIGINT ignored. Dagster maps SIGTERM to SIGINT's handler (`dagster._utils.interrupts
.setup_interrupt_handlers`, called by `dagster dev`, its code servers and in-process runs), so
SIGTERM became ignored too, in that process and in every process it started after: a backgrounded
`chaffee dev` outlived `kill`, and its code servers with it (seen: SigIgn 0x5006 on `dagster dev`,
the code server and its gRPC server; the process still alive 10 s after SIGTERM).
"""

from __future__ import annotations

import signal


def default_signals() -> list[str]:
    """Python's own handlers back for SIGINT and SIGTERM where they arrived ignored: the process (and
    what it starts) stops on SIGTERM and Ctrl-C. The names of the signals restored."""
    restored = []
    for sig, handler in ((signal.SIGINT, signal.default_int_handler), (signal.SIGTERM, signal.SIG_DFL)):
        if signal.getsignal(sig) is signal.SIG_IGN:
            signal.signal(sig, handler)
            restored.append(sig.name)
    return restored
