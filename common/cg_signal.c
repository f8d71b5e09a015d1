/* cg_signal: the stop-signal setup every capgate process shares (see cg_signal.h). */
#include "cg_signal.h"

#include <pthread.h>

void cg_signals_stop_set(sigset_t *set)
{
    sigemptyset(set);
    sigaddset(set, SIGINT);
    sigaddset(set, SIGTERM);
}

void cg_signals_block(sigset_t *set)
{
    cg_signals_stop_set(set);
    pthread_sigmask(SIG_BLOCK, set, NULL);
    signal(SIGPIPE, SIG_IGN);
}
