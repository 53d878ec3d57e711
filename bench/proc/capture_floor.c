/* Floor for the capture benchmark: spawn the writer with a pipe on its
** stdout and read everything into one growing buffer (realloc doubling,
** 64 KiB to start, reading straight into the free space).
** Prints: elapsed seconds, bytes, MB/s, own peak RSS (KiB). */
#include <string.h>
#include <sys/resource.h>
#include <unistd.h>
#include "floor.h"

int main(int argc, char **argv) {
  struct rusage ru;
  int fd, st;
  pid_t pid;
  size_t len = 0, cap = 64 * 1024;
  char *buf;
  double t0, dt;
  if (argc < 2) return fputs("usage: capture_floor CMD [ARGS]\n", stderr), 2;
  t0 = now();
  buf = malloc(cap);
  if ((fd = spawn_reader(argv + 1, &pid)) < 0) return 1;
  for (;;) {
    ssize_t n;
    if (cap - len < 64 * 1024) {
      cap *= 2;
      if ((buf = realloc(buf, cap)) == NULL) return perror("realloc"), 1;
    }
    n = read(fd, buf + len, cap - len);
    if (n < 0) return perror("read"), 1;
    if (n == 0) break;
    len += (size_t)n;
  }
  close(fd);
  waitpid(pid, &st, 0);
  dt = now() - t0;
  getrusage(RUSAGE_SELF, &ru);
  printf("%.6f %zu %.1f %ld\n", dt, len, len / dt / 1e6, ru.ru_maxrss);
  free(buf);
  return 0;
}
