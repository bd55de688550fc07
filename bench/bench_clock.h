/* bench_clock.h — wall time and the CPU used by other processes during a
 * measurement, shared by the benchmarks (a figure taken while something else
 * ran is marked, not trusted). */
#ifndef PT_BENCH_CLOCK_H
#define PT_BENCH_CLOCK_H

#include <stdio.h>
#include <sys/resource.h>
#include <time.h>
#include <unistd.h>

static inline double now_s(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + 1e-9 * (double)ts.tv_nsec;
}

/* CPU seconds used on the whole machine (non-idle, including steal; iowait
 * is idle) and by this process; busy < 0 when /proc/stat cannot be read. */
typedef struct {
    double busy, self, wall;
} cpu_sample;

static inline cpu_sample cpu_now(void)
{
    cpu_sample c = {-1.0, 0.0, now_s()};
    FILE *f = fopen("/proc/stat", "r");
    if (f) {
        unsigned long long v[8] = {0};
        /* user nice system idle iowait irq softirq steal */
        if (fscanf(f, "cpu %llu %llu %llu %llu %llu %llu %llu %llu", &v[0], &v[1], &v[2], &v[3], &v[4], &v[5],
                   &v[6], &v[7]) == 8) {
            long tck = sysconf(_SC_CLK_TCK);
            c.busy = (double)(v[0] + v[1] + v[2] + v[5] + v[6] + v[7]) / (double)(tck > 0 ? tck : 100);
        }
        fclose(f);
    }
    struct rusage ru;
    if (getrusage(RUSAGE_SELF, &ru) == 0)
        c.self = (double)ru.ru_utime.tv_sec + 1e-6 * (double)ru.ru_utime.tv_usec + (double)ru.ru_stime.tv_sec +
                 1e-6 * (double)ru.ru_stime.tv_usec;
    return c;
}

/* CPUs' worth of time used by other processes between a and b (-1: unknown). */
static inline double others_cpus(cpu_sample a, cpu_sample b)
{
    if (a.busy < 0.0 || b.busy < 0.0 || b.wall <= a.wall) return -1.0;
    double o = ((b.busy - a.busy) - (b.self - a.self)) / (b.wall - a.wall);
    return o > 0.0 ? o : 0.0;
}

#endif
