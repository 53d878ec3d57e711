/*
** Cold-start harness: runs each command many times with stdin from a file
** (a statusline payload) and stdout/stderr on /dev/null, interleaved (one
** run of each command in turn, so load on the machine hits all alike), and
** prints per-round medians. hyperfine 1.15 cannot feed stdin, hence this.
**
**   coldstart ROUNDS RUNS PAYLOAD NAME CMD... [-- NAME CMD...]...
**
** Output, one line per round and command: "<name> <round> <median seconds>".
** A run that does not exit 0 aborts the benchmark.
*/
#include <fcntl.h>
#include <spawn.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

extern char **environ;

#define MAX_CMDS 16

typedef struct cmd {
  const char *name;
  char **argv;
  double *times;
} cmd_t;

static double now(void) {
  struct timespec ts;
  clock_gettime(CLOCK_MONOTONIC, &ts);
  return ts.tv_sec + ts.tv_nsec / 1e9;
}

/* One run: wall time from spawn to reaped exit, or -1 on failure. */
static double run_once(char **argv, const char *payload) {
  posix_spawn_file_actions_t fa;
  pid_t pid;
  int status;
  double t0 = now();
  posix_spawn_file_actions_init(&fa);
  posix_spawn_file_actions_addopen(&fa, 0, payload, O_RDONLY, 0);
  posix_spawn_file_actions_addopen(&fa, 1, "/dev/null", O_WRONLY, 0);
  posix_spawn_file_actions_addopen(&fa, 2, "/dev/null", O_WRONLY, 0);
  if (posix_spawnp(&pid, argv[0], &fa, NULL, argv, environ) != 0) return -1;
  posix_spawn_file_actions_destroy(&fa);
  if (waitpid(pid, &status, 0) < 0 || !WIFEXITED(status) || WEXITSTATUS(status))
    return -1;
  return now() - t0;
}

static int cmp(const void *a, const void *b) {
  double x = *(const double *)a, y = *(const double *)b;
  return (x > y) - (x < y);
}

static int parse(int argc, char **argv, cmd_t *cmds) {
  int n = 0;
  for (int i = 4; i < argc && n < MAX_CMDS; i++) {
    cmds[n].name = argv[i];
    cmds[n].argv = &argv[i + 1];
    while (i + 1 < argc && strcmp(argv[i + 1], "--") != 0) i++;
    if (i + 1 < argc) argv[++i] = NULL;  /* the "--" ends this argv */
    n++;
  }
  return n;
}

int main(int argc, char **argv) {
  cmd_t cmds[MAX_CMDS];
  int rounds, runs, n;
  if (argc < 6) {
    fprintf(stderr, "usage: coldstart ROUNDS RUNS PAYLOAD NAME CMD... [-- NAME CMD...]...\n");
    return 2;
  }
  rounds = atoi(argv[1]);
  runs = atoi(argv[2]);
  n = parse(argc, argv, cmds);
  for (int c = 0; c < n; c++) cmds[c].times = calloc((size_t)runs, sizeof(double));
  for (int w = 0; w < 10; w++)  /* warm the page cache */
    for (int c = 0; c < n; c++) run_once(cmds[c].argv, argv[3]);
  for (int r = 1; r <= rounds; r++) {
    for (int i = 0; i < runs; i++) {
      for (int c = 0; c < n; c++) {
        double t = run_once(cmds[c].argv, argv[3]);
        if (t < 0) {
          fprintf(stderr, "coldstart: '%s' failed\n", cmds[c].name);
          return 1;
        }
        cmds[c].times[i] = t;
      }
    }
    for (int c = 0; c < n; c++) {
      qsort(cmds[c].times, (size_t)runs, sizeof(double), cmp);
      printf("%s %d %.6f\n", cmds[c].name, r, cmds[c].times[runs / 2]);
    }
    fflush(stdout);
  }
  return 0;
}
