/*
** Floor for `procrun ps --json`: the same system calls without any
** parsing: list running/ and done/ of a monitor directory, open, fstat,
** read and close each *.json file, and write them all to stdout as one
** array. Prints nothing else; time it from outside (hyperfine).
**   ps_floor DIR
*/
#define _GNU_SOURCE
#include <dirent.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

static char *out;
static size_t used, cap;

static void append(const char *p, size_t n) {
  if (used + n > cap) {
    while (used + n > cap) cap = cap ? cap * 2 : 1 << 20;
    out = realloc(out, cap);
    if (!out) exit(1);
  }
  memcpy(out + used, p, n);
  used += n;
}

static void read_dir(const char *path) {
  int dfd = open(path, O_RDONLY | O_DIRECTORY);
  DIR *d = fdopendir(dfd);
  struct dirent *de;
  char buf[65536];
  if (!d) return;
  while ((de = readdir(d)) != NULL) {
    struct stat st;
    size_t n = strlen(de->d_name);
    int fd;
    ssize_t r;
    if (de->d_name[0] == '.' || n < 6 || strcmp(de->d_name + n - 5, ".json")) continue;
    fd = openat(dfd, de->d_name, O_RDONLY | O_NOFOLLOW);
    if (fd < 0) continue;
    if (fstat(fd, &st) == 0 && (r = read(fd, buf, sizeof buf)) > 0) {
      append(used ? "," : "[", 1);
      append(buf, (size_t)r);
    }
    close(fd);
  }
  closedir(d);
}

int main(int argc, char **argv) {
  char path[4096];
  if (argc < 2) return 2;
  snprintf(path, sizeof path, "%s/running", argv[1]);
  read_dir(path);
  snprintf(path, sizeof path, "%s/done", argv[1]);
  read_dir(path);
  append("]\n", 2);
  fwrite(out, 1, used, stdout);
  return 0;
}
