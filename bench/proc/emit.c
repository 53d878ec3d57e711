/* The capture benchmark's child: writes N bytes (default 256 MiB) of 'x'
** to stdout in 1 MiB writes. Cheaper than `head -c N /dev/zero`, so the
** reader's cost is what the benchmark sees. */
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

int main(int argc, char **argv) {
  static char buf[1 << 20];
  long long left = argc > 1 ? atoll(argv[1]) : 256LL << 20;
  memset(buf, 'x', sizeof buf);
  while (left > 0) {
    ssize_t n = write(1, buf, left < (long long)sizeof buf ? (size_t)left : sizeof buf);
    if (n < 0 && errno == EINTR) continue;
    if (n < 0) return perror("write"), 1;
    left -= n;
  }
  return 0;
}
