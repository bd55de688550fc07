/* stop.h — stopping a training run cleanly on a signal.
 *
 * SIGUSR1, SIGTERM and SIGINT ask a training run to stop. The handler only
 * records the first such signal in a volatile sig_atomic_t (async-signal-
 * safe); the fused end-of-step reduction (step.c) counts, per signal, the
 * ranks that received one, so every rank sees the request at the same step
 * and the trainer stops there, with a checkpoint. A second stop signal to a
 * process that already holds one ends it at once: rank 0 writes one line on
 * stderr, the default disposition is restored and the signal raised again.
 * Crash signals (executor_install_crash_report) are not touched. Not
 * collective, no MPI. */
#ifndef PT_STOP_H
#define PT_STOP_H

/* The signals that ask for a stop, in the order of the step reduction's slots. */
#define STOP_KINDS 3

/* Installs the handlers for SIGUSR1, SIGTERM and SIGINT (SA_RESTART: an
 * interrupted system call resumes) and clears any earlier request; `rank`
 * (the world rank) decides who prints on a second signal. Remembers the
 * dispositions it replaces for stop_uninstall. */
void stop_install(int rank);

/* Restores the dispositions stop_install replaced; a no-op when none is
 * installed. */
void stop_uninstall(void);

/* The first stop signal this process received since stop_install, 0 when
 * none. */
int stop_signal(void);

/* The signal of reduction slot k (0 ≤ k < STOP_KINDS): SIGUSR1, SIGTERM,
 * SIGINT. */
int stop_signal_of(int k);

/* "SIGUSR1", "SIGTERM", "SIGINT", or "a signal" for any other number. */
const char *stop_signal_name(int sig);

#endif
