/*
** The C floor for the cache benchmark: the syscalls a cache set and get
** cannot avoid, with nothing else. set: open a temp file (O_CREAT|O_EXCL),
** write the record, close, rename over the entry. get: open, read, close.
** Same record size, same key count, same directory layout as
** cache_bench.lua.
**
**   cache_floor DIR N KEYS   ->  prints "<set seconds> <get seconds>"
*/
#define _GNU_SOURCE
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <time.h>
#include <unistd.h>

static double now(void) {
  struct timespec ts;
  clock_gettime(CLOCK_MONOTONIC, &ts);
  return (double)ts.tv_sec + (double)ts.tv_nsec / 1e9;
}

static void die(const char *what) {
  perror(what);
  exit(1);
}

static void set_all(long n, long keys) {
  char rec[512], tmp[64], name[64];
  for (long i = 0; i < n; i++) {
    int len = snprintf(rec, sizeof rec,
      "{\"key\":\"key:%ld\",\"expires_at\":1732603600.250,\"value\":"
      "{\"pid\":4242,\"name\":\"build\",\"status\":\"running\","
      "\"started_at\":1732600000.25,\"cmd\":[\"make\",\"-j8\"]}}\n",
      i % keys);
    int fd;
    snprintf(tmp, sizeof tmp, ".tmp-%ld-%ld", (long)getpid(), i);
    snprintf(name, sizeof name, "key:%ld.json", i % keys);
    fd = open(tmp, O_WRONLY | O_CREAT | O_EXCL | O_CLOEXEC, 0600);
    if (fd < 0) die("open");
    if (write(fd, rec, (size_t)len) != len) die("write");
    if (close(fd) != 0) die("close");
    if (rename(tmp, name) != 0) die("rename");
  }
}

static long get_all(long n, long keys) {
  char buf[4096], name[64];
  long total = 0;
  for (long i = 0; i < n; i++) {
    ssize_t r;
    int fd;
    snprintf(name, sizeof name, "key:%ld.json", i % keys);
    fd = open(name, O_RDONLY | O_CLOEXEC);
    if (fd < 0) die("open");
    while ((r = read(fd, buf, sizeof buf)) > 0) total += r;
    close(fd);
  }
  return total;
}

int main(int argc, char **argv) {
  long n, keys;
  double t0, t1, t2;
  if (argc != 4) {
    fprintf(stderr, "usage: cache_floor DIR N KEYS\n");
    return 2;
  }
  if (chdir(argv[1]) != 0) die(argv[1]);
  n = atol(argv[2]);
  keys = atol(argv[3]);
  t0 = now();
  set_all(n, keys);
  t1 = now();
  if (get_all(n, keys) <= 0) die("get");
  t2 = now();
  printf("%.6f %.6f\n", t1 - t0, t2 - t1);
  return 0;
}
