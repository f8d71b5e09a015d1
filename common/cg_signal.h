/* cg_signal: the stop-signal setup every capgate process shares (SIGINT/SIGTERM blocked
 * in every thread and taken with sigwait by the main thread; SIGPIPE ignored). */
#ifndef CG_SIGNAL_H
#define CG_SIGNAL_H

#include <signal.h>

/* Fill *set with the stop signals (SIGINT, SIGTERM), for sigwait. */
void cg_signals_stop_set(sigset_t *set);

/* Block the stop signals in the calling thread and ignore SIGPIPE. Call before any
 * thread exists, so every thread (libuv, NNG, curl) inherits the mask. *set receives the
 * stop signals. */
void cg_signals_block(sigset_t *set);

#endif
