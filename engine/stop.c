/* stop.c — the stop-signal flag (see stop.h). */
#include "stop.h"

#include <signal.h>
#include <stdatomic.h>
#include <stdio.h>
#include <string.h>
#include <unistd.h>

static const int kinds[STOP_KINDS] = {SIGUSR1, SIGTERM, SIGINT};
static const char *const names[STOP_KINDS] = {"SIGUSR1", "SIGTERM", "SIGINT"};

static volatile sig_atomic_t requested; /* the first stop signal, 0: none */
static atomic_flag taken = ATOMIC_FLAG_INIT; /* set by the first: two threads may take a signal each at once */
static struct sigaction before[STOP_KINDS];
static int installed, speaks; /* speaks: this process prints on a second signal (rank 0) */
static char second[STOP_KINDS][160]; /* written at install: formatting is not async-signal-safe */

static void on_stop_signal(int sig)
{
    if (!atomic_flag_test_and_set(&taken)) { /* lock-free, so async-signal-safe */
        requested = sig;
        return;
    }
    /* a second one: end at once, as if no handler were installed */
    for (int k = 0; k < STOP_KINDS; k++)
        if (kinds[k] == sig && speaks) {
            ssize_t w = write(STDERR_FILENO, second[k], strlen(second[k]));
            (void)w;
        }
    struct sigaction dfl;
    memset(&dfl, 0, sizeof dfl);
    dfl.sa_handler = SIG_DFL;
    sigemptyset(&dfl.sa_mask);
    sigaction(sig, &dfl, NULL);
    raise(sig); /* blocked until this handler returns, then the default action */
}

void stop_install(int rank)
{
    stop_uninstall();
    requested = 0;
    atomic_flag_clear(&taken);
    speaks = rank == 0;
    struct sigaction sa;
    memset(&sa, 0, sizeof sa);
    sa.sa_handler = on_stop_signal;
    sa.sa_flags = SA_RESTART;
    sigemptyset(&sa.sa_mask);
    for (int k = 0; k < STOP_KINDS; k++) sigaddset(&sa.sa_mask, kinds[k]); /* one handler at a time */
    for (int k = 0; k < STOP_KINDS; k++) {
        snprintf(second[k], sizeof second[k],
                 "pipetrain: %s while stopping (a second stop signal): ending at once, without a checkpoint "
                 "of this step\n", names[k]);
        sigaction(kinds[k], &sa, &before[k]);
    }
    installed = 1;
}

void stop_uninstall(void)
{
    if (!installed) return;
    for (int k = 0; k < STOP_KINDS; k++) sigaction(kinds[k], &before[k], NULL);
    installed = 0;
}

int stop_signal(void) { return requested; }

int stop_signal_of(int k) { return k >= 0 && k < STOP_KINDS ? kinds[k] : 0; }

const char *stop_signal_name(int sig)
{
    for (int k = 0; k < STOP_KINDS; k++)
        if (kinds[k] == sig) return names[k];
    return "a signal";
}
