/* Floor for the spawn benchmark: N x /bin/true, K in flight, with plain
** posix_spawn + waitpid. Prints: elapsed seconds, spawns per second. */
#include "floor.h"

int main(int argc, char **argv) {
  int n = argc > 1 ? atoi(argv[1]) : 1000, k = argc > 2 ? atoi(argv[2]) : 8;
  char *child[] = {"/bin/true", NULL};
  int started = 0, done = 0, inflight = 0, st;
  double t0 = now(), dt;
  while (done < n) {
    while (inflight < k && started < n) {
      pid_t pid;
      if (posix_spawn(&pid, child[0], NULL, NULL, child, environ) != 0) return perror("spawn"), 1;
      started++, inflight++;
    }
    if (waitpid(-1, &st, 0) < 0) return perror("waitpid"), 1;
    if (!WIFEXITED(st) || WEXITSTATUS(st) != 0) return fputs("child failed\n", stderr), 1;
    inflight--, done++;
  }
  dt = now() - t0;
  printf("%.6f %.1f\n", dt, n / dt);
  return 0;
}
