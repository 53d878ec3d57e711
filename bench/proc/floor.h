/* Shared by the C floors of the process benchmarks (spawn_floor.c,
** capture_floor.c, lines_floor.c): the common includes and a monotonic
** clock in seconds, a child with its stdout on a pipe. bench/run.sh rebuilds the floors when this changes. */
#ifndef BENCH_PROC_FLOOR_H
#define BENCH_PROC_FLOOR_H

#include <spawn.h>
#include <stdio.h>
#include <stdlib.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

extern char **environ;

static double now(void) {
  struct timespec ts;
  clock_gettime(CLOCK_MONOTONIC, &ts);
  return ts.tv_sec + ts.tv_nsec / 1e9;
}

/* Starts argv[0] (PATH search) with its stdout on a pipe; returns the read
** end, or -1 after perror. */
static inline int spawn_reader(char **argv, pid_t *pid) {
  posix_spawn_file_actions_t fa;
  int fds[2];
  if (pipe(fds) != 0) return perror("pipe"), -1;
  posix_spawn_file_actions_init(&fa);
  posix_spawn_file_actions_adddup2(&fa, fds[1], 1);
  posix_spawn_file_actions_addclose(&fa, fds[0]);
  if (posix_spawnp(pid, argv[0], &fa, NULL, argv, environ) != 0) return perror("spawn"), -1;
  posix_spawn_file_actions_destroy(&fa);
  close(fds[1]);
  return fds[0];
}

#endif
