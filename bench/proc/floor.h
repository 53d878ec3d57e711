/* Shared by the C floors of the process benchmarks (spawn_floor.c,
** capture_floor.c, lines_floor.c): the common includes and a monotonic
** clock in seconds. bench/run.sh rebuilds the floors when this changes. */
#ifndef BENCH_PROC_FLOOR_H
#define BENCH_PROC_FLOOR_H

#include <spawn.h>
#include <stdio.h>
#include <stdlib.h>
#include <sys/wait.h>
#include <time.h>

extern char **environ;

static double now(void) {
  struct timespec ts;
  clock_gettime(CLOCK_MONOTONIC, &ts);
  return ts.tv_sec + ts.tv_nsec / 1e9;
}

#endif
