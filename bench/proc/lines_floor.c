/* Floor for the line benchmark: spawn the command with a pipe on its
** stdout, read 64 KiB at a time and only split lines (memchr).
** Prints: elapsed seconds, lines, lines per second. */
#include <string.h>
#include <unistd.h>
#include "floor.h"

int main(int argc, char **argv) {
  static char buf[64 * 1024];
  int fd, st;
  pid_t pid;
  long lines = 0;
  size_t carry = 0;  /* length of the unterminated tail seen so far */
  double t0, dt;
  if (argc < 2) return fputs("usage: lines_floor CMD [ARGS]\n", stderr), 2;
  t0 = now();
  if ((fd = spawn_reader(argv + 1, &pid)) < 0) return 1;
  for (;;) {
    ssize_t n = read(fd, buf, sizeof buf);
    char *p = buf, *end, *nl;
    if (n < 0) return perror("read"), 1;
    if (n == 0) break;
    end = buf + n;
    while ((nl = memchr(p, '\n', (size_t)(end - p))) != NULL) {
      lines++;
      carry = 0;
      p = nl + 1;
    }
    carry += (size_t)(end - p);
  }
  if (carry) lines++;
  close(fd);
  waitpid(pid, &st, 0);
  dt = now() - t0;
  printf("%.6f %ld %.0f\n", dt, lines, lines / dt);
  return 0;
}
