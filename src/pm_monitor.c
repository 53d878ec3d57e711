/*
** The monitor's record directory (module "procmon.mondir"): reading many
** small record files fast, atomic record writes, liveness from /proc (pid
** *and* start time), the directory lock for keyed runs, and capped log
** files. Everything about what a record means is Lua (procmon.monitor);
** this file does what is slow or impossible there: `procrun ps --json`
** over 10,000 records must not decode them in Lua just to sort and filter.
**
** Layout of a monitor directory (all 0700, files 0600):
**   running/<id>.json   records whose job has not ended
**   running/<id>.stop   "do not restart": the job was killed or replaced
**   done/<id>.json      finished records (expire after their expires_at)
**   logs/<id>.log[.1]   per-record logs, one rotation
**   .lock               flock'ed for keyed-run bookkeeping
*/
#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/file.h>
#include <sys/ioctl.h>
#include <sys/mman.h>
#include <sys/uio.h>
#include <sys/pidfd.h>
#include <sys/random.h>
#include <sys/stat.h>
#include <sys/types.h>
#include <time.h>
#include <unistd.h>

#include "pm_internal.h"

#define PM_MONDIR_MT "procmon.MonDir"
#define PM_MONLOCK_MT "procmon.MonLock"
#define PM_MONLOG_MT "procmon.MonLog"
#define PM_SCAN_MT "procmon.MonScan"

#define ID_MAX 32          /* longest record id accepted in a file name */
#define NAME_BUF 64
#define STALE_TEMP 60.0    /* seconds after which a temp file is litter */

enum { SUB_RUNNING, SUB_DONE, SUB_LOGS, SUB_COUNT };
static const char *const sub_names[] = {"running", "done", "logs", NULL};

typedef struct mondir {
  int root;
  int sub[SUB_COUNT];
} mondir_t;

/* {=== /proc: start times and liveness ===} */

typedef unsigned long long ticks_t;

/*
** Reads /proc/<pid>/stat: the state letter and the start time (field 22,
** clock ticks since boot). Returns 0, or -1 when there is no such process.
*/
static int proc_stat(long pid, char *state, ticks_t *start) {
  char path[48], buf[1024], *p;
  ssize_t n;
  int fd;
  snprintf(path, sizeof path, "/proc/%ld/stat", pid);
  if (pid <= 0 || (fd = open(path, O_RDONLY | O_CLOEXEC)) < 0) return -1;
  n = read(fd, buf, sizeof buf - 1);
  close(fd);
  if (n <= 0) return -1;
  buf[n] = '\0';
  if ((p = strrchr(buf, ')')) == NULL || p[1] != ' ') return -1;
  *state = p[2];
  p += 2;  /* field 3 */
  for (int field = 3; field < 22; field++) {
    p = strchr(p, ' ');
    if (p == NULL) return -1;
    p++;
  }
  *start = strtoull(p, NULL, 10);
  return 0;
}

/* Is 'pid' alive (not a zombie) and started at 'start'? */
static int proc_alive(long pid, ticks_t start) {
  char state;
  ticks_t t;
  if (proc_stat(pid, &state, &t) != 0) return 0;
  return t == start && state != 'Z' && state != 'X';
}

static char boot_id[40];
static ticks_t self_start;
static pid_t self_pid;     /* whose start time self_start is (forks differ) */

/* This boot's id (/proc/sys/kernel/random/boot_id) and our start time:
** start times only mean something within one boot. */
static void load_self(void) {
  char state;
  if (boot_id[0] == '\0') {
    int fd = open("/proc/sys/kernel/random/boot_id", O_RDONLY | O_CLOEXEC);
    ssize_t n = fd >= 0 ? read(fd, boot_id, sizeof boot_id - 1) : -1;
    if (fd >= 0) close(fd);
    while (n > 0 && (boot_id[n - 1] == '\n' || boot_id[n - 1] == ' ')) n--;
    boot_id[n > 0 ? n : 0] = '\0';
    if (boot_id[0] == '\0') strcpy(boot_id, "unknown");
  }
  if (self_pid == getpid()) return;
  self_pid = getpid();
  if (proc_stat((long)self_pid, &state, &self_start) != 0) self_start = 0;
}

/* }=== */

/* {=== record fields: a scanner of the top-level object ===} */

/*
** Only a few top-level fields of a record matter in C (to sort, filter
** and check liveness); the rest is skipped without building values, and
** the text is handed to Lua as is. Records are written by procmon.monitor
** through procmon.json; a file this scanner cannot follow is skipped.
*/
typedef struct rec_info {
  double started_at, expires_at;
  long long pid, owner_pid;
  ticks_t start_time, owner_start;
  int has_pid, has_expiry, detached;
  char boot[40];
} rec_info_t;

static const char *skip_ws(const char *p) {
  while (*p == ' ' || *p == '\t' || *p == '\n' || *p == '\r') p++;
  return p;
}

/* Past the string starting at p (on its quote), or NULL. */
static const char *skip_string(const char *p) {
  for (p++; *p; p++) {
    if (*p == '\\') {
      if (*++p == '\0') return NULL;
    } else if (*p == '"') {
      return p + 1;
    }
  }
  return NULL;
}

/* Past one JSON value (nested ones counted, strings skipped), or NULL. */
static const char *skip_value(const char *p) {
  int depth = 0;
  for (;;) {
    p = skip_ws(p);
    if (*p == '"') {
      if ((p = skip_string(p)) == NULL) return NULL;
    } else if (*p == '{' || *p == '[') {
      depth++;
      p++;
      continue;
    } else if (*p == '}' || *p == ']') {
      if (--depth < 0) return NULL;
      p++;
    } else if (*p == '\0') {
      return NULL;
    } else if (depth > 0 && (*p == ',' || *p == ':')) {
      p++;
      continue;
    } else {
      while (*p && strchr(",:}] \t\r\n", *p) == NULL) p++;  /* a scalar */
    }
    if (depth == 0) return p;
  }
}

static int key_is(const char *k, size_t n, const char *want) {
  return strlen(want) == n && memcmp(k, want, n) == 0;
}

/* Stores the value at p into the field named k, if it is one we need. A
** field given twice is the last one, as for procmon.json (a null clears). */
static void take_field(rec_info_t *r, const char *k, size_t n, const char *p) {
  if (key_is(k, n, "started_at")) r->started_at = strtod(p, NULL);
  else if (key_is(k, n, "expires_at"))
    r->expires_at = strtod(p, NULL), r->has_expiry = *p != 'n';
  else if (key_is(k, n, "pid"))
    r->pid = strtoll(p, NULL, 10), r->has_pid = *p != 'n';
  else if (key_is(k, n, "owner_pid")) r->owner_pid = strtoll(p, NULL, 10);
  else if (key_is(k, n, "start_time")) r->start_time = strtoull(p, NULL, 10);
  else if (key_is(k, n, "owner_start_time"))
    r->owner_start = strtoull(p, NULL, 10);
  else if (key_is(k, n, "detached")) r->detached = *p == 't';
  else if (key_is(k, n, "boot_id")) {
    size_t i = 0;
    if (*p == '"')
      for (p++; *p && *p != '"' && i < sizeof r->boot - 1; p++) r->boot[i++] = *p;
    r->boot[i] = '\0';
  }
}

/* Fills r from the NUL-terminated record text; 0, or -1 if malformed. */
static int scan_record(const char *s, rec_info_t *r) {
  memset(r, 0, sizeof *r);
  s = skip_ws(s);
  if (*s++ != '{') return -1;
  for (;;) {
    const char *k, *v;
    s = skip_ws(s);
    if (*s == '}') return 0;
    if (*s != '"' || (v = skip_string(s)) == NULL) return -1;
    k = s + 1;
    s = skip_ws(v);
    if (*s++ != ':') return -1;
    s = skip_ws(s);
    take_field(r, k, (size_t)(v - 1 - k), s);
    if ((s = skip_value(s)) == NULL) return -1;
    s = skip_ws(s);
    if (*s == ',') s++;
    else if (*s != '}') return -1;
  }
}

/* }=== */

/* {=== liveness classes ===} */

/*
** What a running record means now:
**   alive   its process lives (pid and start time match, same boot)
**   ending  its process is gone but its owner lives and will record the
**           end (or it waits to restart: no pid)
**   self    as ending, but the owner is this process: Lua checks whether
**           it still tracks the job
**   lost    gone without a recorded end: the owner died (a non-detached
**           job dies with its owner), or a pid of another boot
*/
static const char *classify(const rec_info_t *r) {
  int same_boot = strcmp(r->boot, boot_id) == 0;
  int child = same_boot && r->has_pid && proc_alive((long)r->pid, r->start_time);
  int self = same_boot && r->owner_pid == (long long)getpid() &&
             r->owner_start == self_start;
  int owner = self || (same_boot && proc_alive((long)r->owner_pid, r->owner_start));
  if (!owner && (!r->detached || !child)) return "lost";
  if (child) return "alive";
  return self ? "self" : "ending";
}

/* }=== */

/* {=== directory scan ===} */

typedef struct entry {
  size_t off, len;      /* the text, in the arena or (in_idx) the index */
  double started_at, expires_at;
  int has_expiry, in_idx;
  const char *cls;      /* NULL for a finished record */
  unsigned long long ino;
  char id[ID_MAX + 1];
} entry_t;

/* A finished record in the index: id, inode, sort and expiry fields, and
** where its text is in s->idx. */
typedef struct idx_slot {
  const char *id;
  size_t idlen, off, len;
  unsigned long long ino;
  double started_at, expires_at;
  int has_expiry;
} idx_slot_t;

/* GC-owned scan state, so that a raise halfway leaks nothing. */
typedef struct scan {
  char *arena;
  size_t used, cap;
  entry_t *ents;
  size_t n, ecap;
  char *idx;            /* the index file, mapped */
  size_t idx_size;
  idx_slot_t *slots;    /* open addressing over the index's entries */
  size_t nslots, idx_count, hits, misses;
} scan_t;

static int scan_gc(lua_State *L) {
  scan_t *s = (scan_t *)luaL_checkudata(L, 1, PM_SCAN_MT);
  free(s->arena);
  free(s->ents);
  if (s->idx) munmap(s->idx, s->idx_size);
  free(s->slots);
  s->arena = NULL;
  s->ents = NULL;
  s->idx = NULL;
  s->slots = NULL;
  return 0;
}

static int reserve(void **p, size_t *cap, size_t need, size_t size) {
  size_t c = *cap ? *cap : 64;
  void *q;
  if (need <= *cap) return 0;
  while (c < need) c *= 2;
  if ((q = realloc(*p, c * size)) == NULL) return -1;
  *p = q;
  *cap = c;
  return 0;
}

/* The id of "<id>.json" (letters, digits, '-', '_'), or 0 if not a record. */
static int record_id(const char *name, const char *ext, char *id) {
  size_t n = strlen(name), e = strlen(ext);
  if (n <= e || n - e > ID_MAX || strcmp(name + n - e, ext) != 0) return 0;
  for (size_t i = 0; i < n - e; i++) {
    char c = name[i];
    if (!((c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') ||
          (c >= '0' && c <= '9') || c == '-' || c == '_'))
      return 0;
    id[i] = c;
  }
  id[n - e] = '\0';
  return 1;
}

/* Appends the file 'name' of 'dirfd' to the arena, NUL-terminated.
** Returns its length, or -1 with errno (ENOENT also for a symlink or
** anything that is not a regular file). */
static ssize_t slurp(scan_t *s, int dirfd, const char *name,
                     unsigned long long *ino) {
  struct stat st;
  size_t got = 0;
  int err = 0, fd = openat(dirfd, name, O_RDONLY | O_NOFOLLOW | O_NONBLOCK | O_CLOEXEC);
  if (fd < 0) return errno == ELOOP || errno == ENXIO ? (errno = ENOENT, -1) : -1;
  if (fstat(fd, &st) != 0) err = errno;
  else if (!S_ISREG(st.st_mode)) err = ENOENT;
  else if (reserve((void **)&s->arena, &s->cap, s->used + (size_t)st.st_size + 1, 1) != 0)
    err = ENOMEM;
  while (err == 0 && got < (size_t)st.st_size) {
    ssize_t r = read(fd, s->arena + s->used + got, (size_t)st.st_size - got);
    if (r < 0 && errno == EINTR) continue;
    if (r < 0) err = errno;
    if (r <= 0) break;
    got += (size_t)r;
  }
  close(fd);
  if (err) return errno = err, -1;
  s->arena[s->used + got] = '\0';
  if (ino) *ino = (unsigned long long)st.st_ino;
  return (ssize_t)got;
}

/* {=== the index of finished records ===}
** `ps --all` over 10,000 records would read 10,000 files (four system
** calls each). Finished records never change once written (a new version
** is a new file, renamed in: a new inode), so <dir>/.done-index keeps
** their texts with their inode numbers; readdir gives every name with its
** inode, and only names missing from the index, or with another inode,
** are read. The index is a cache: rewritten (temp file + rename) by any
** scan that found it 16 entries off; a broken one is ignored.
**   procmon-done-index 2\n, then per record:
**   <id> <ino> <started_at> <expires_at or -> <len>\n<text>\n
** It is mapped (MAP_POPULATE: no page fault per 4 KiB) and its texts are
** used in place: on the benchmark VM, touching fresh memory cost more than
** the reads themselves.
*/
#define INDEX_NAME ".done-index"
#define INDEX_MAGIC "procmon-done-index 2\n"

static size_t hash_id(const char *id, size_t n) {
  size_t h = 2166136261u;
  for (size_t i = 0; i < n; i++) h = (h ^ (unsigned char)id[i]) * 16777619u;
  return h;
}

static void index_insert(scan_t *s, const idx_slot_t *e) {
  size_t i = hash_id(e->id, e->idlen) & (s->nslots - 1);
  while (s->slots[i].id) i = (i + 1) & (s->nslots - 1);
  s->slots[i] = *e;
}

/* Walks the entries after the magic line; calls index_insert when 'insert'.
** Returns the number of entries, or -1 when the file is malformed. */
static long index_walk(scan_t *s, size_t size, int insert) {
  const char *p = s->idx + sizeof INDEX_MAGIC - 1, *end = s->idx + size;
  long n = 0;
  while (p < end) {
    idx_slot_t e;
    char *q;
    const char *sp = memchr(p, ' ', (size_t)(end - p));
    if (sp == NULL || sp == p || sp - p > ID_MAX) return -1;
    e.id = p;
    e.idlen = (size_t)(sp - p);
    e.ino = strtoull(sp + 1, &q, 10);
    if (*q != ' ') return -1;
    e.started_at = strtod(q + 1, &q);
    if (*q != ' ') return -1;
    e.has_expiry = q[1] != '-';
    e.expires_at = e.has_expiry ? strtod(q + 1, &q) : (q += 2, 0);
    if (*q != ' ') return -1;
    e.len = strtoull(q + 1, &q, 10);
    if (*q != '\n' || e.len > (size_t)(end - q) - 2 || q[1 + e.len] != '\n') return -1;
    e.off = (size_t)(q + 1 - s->idx);
    if (insert) index_insert(s, &e);
    p = q + 2 + e.len;
    n++;
  }
  return n;
}

/* Loads <root>/.done-index into s (nothing when missing or malformed). */
static void index_load(scan_t *s, int root) {
  struct stat st;
  long n;
  void *m;
  int fd = openat(root, INDEX_NAME, O_RDONLY | O_NOFOLLOW | O_NONBLOCK | O_CLOEXEC);
  if (fd < 0) return;
  if (fstat(fd, &st) == 0 && S_ISREG(st.st_mode) && st.st_size > (off_t)sizeof INDEX_MAGIC &&
      (m = mmap(NULL, (size_t)st.st_size, PROT_READ, MAP_PRIVATE | MAP_POPULATE, fd, 0)) !=
          MAP_FAILED) {
    s->idx = (char *)m;
    s->idx_size = (size_t)st.st_size;
    if (strncmp(s->idx, INDEX_MAGIC, sizeof INDEX_MAGIC - 1) == 0 &&
        (n = index_walk(s, (size_t)st.st_size, 0)) > 0) {
      for (s->nslots = 16; s->nslots < (size_t)n * 2; s->nslots *= 2) {}
      s->slots = (idx_slot_t *)calloc(s->nslots, sizeof *s->slots);
      if (s->slots) index_walk(s, (size_t)st.st_size, 1);
      s->idx_count = (size_t)n;
    }
  }
  close(fd);
}

/* The index's entry for 'id' if it has it with inode 'ino', else NULL. */
static const idx_slot_t *index_find(scan_t *s, const char *id, unsigned long long ino) {
  size_t n = strlen(id), i;
  if (s->slots == NULL) return NULL;
  for (i = hash_id(id, n) & (s->nslots - 1); s->slots[i].id; i = (i + 1) & (s->nslots - 1)) {
    const idx_slot_t *e = &s->slots[i];
    if (e->idlen == n && memcmp(e->id, id, n) == 0) return e->ino == ino ? e : NULL;
  }
  return NULL;
}

static const char *entry_text(const scan_t *s, const entry_t *e) {
  return (e->in_idx ? s->idx : s->arena) + e->off;
}

/* Rewrites the index from the finished records of this scan, when it was
** 16 or more entries off (new records read, or gone ones still in it). */
static void index_save(scan_t *s, int root) {
  char tmp[NAME_BUF];
  FILE *f;
  int fd, err = 0;
  if (s->misses < 16 && s->idx_count - s->hits < 16) return;
  snprintf(tmp, sizeof tmp, ".tmp-idx-%ld", (long)getpid());
  fd = openat(root, tmp, O_WRONLY | O_CREAT | O_TRUNC | O_NOFOLLOW | O_CLOEXEC, 0600);
  if (fd < 0 || (f = fdopen(fd, "w")) == NULL) {
    if (fd >= 0) close(fd);
    return;
  }
  fputs(INDEX_MAGIC, f);
  for (size_t i = 0; i < s->n; i++) {
    const entry_t *e = &s->ents[i];
    if (e->cls) continue;
    fprintf(f, "%s %llu %.17g ", e->id, e->ino, e->started_at);
    if (e->has_expiry) fprintf(f, "%.17g %zu\n", e->expires_at, e->len);
    else fprintf(f, "- %zu\n", e->len);
    fwrite(entry_text(s, e), 1, e->len, f);
    fputc('\n', f);
  }
  err = ferror(f);
  if (fclose(f) != 0 || err || renameat(root, tmp, root, INDEX_NAME) != 0)
    unlinkat(root, tmp, 0);
}

/* }=== */

typedef struct scan_opts {
  int all;          /* finished records too */
  double now;
  int done_fd;      /* to drop running files whose end is recorded */
} scan_opts_t;

static entry_t *new_entry(scan_t *s, const char *id, unsigned long long ino) {
  entry_t *e;
  if (reserve((void **)&s->ents, &s->ecap, s->n + 1, sizeof *s->ents) != 0) return NULL;
  e = &s->ents[s->n++];
  memset(e, 0, sizeof *e);
  e->ino = ino;
  memcpy(e->id, id, strlen(id) + 1);
  return e;
}

/* A finished record the index has: no file to read. */
static void take_indexed(scan_t *s, const idx_slot_t *x, const char *id,
                         const scan_opts_t *o) {
  entry_t *e;
  s->hits++;
  if (x->has_expiry && x->expires_at <= o->now) return;
  if ((e = new_entry(s, id, x->ino)) == NULL) return;
  e->off = x->off;
  e->len = x->len;
  e->in_idx = 1;
  e->started_at = x->started_at;
  e->expires_at = x->expires_at;
  e->has_expiry = x->has_expiry;
}

/* Reads one record file into the scan; skips what does not belong. */
static void scan_file(scan_t *s, int dirfd, const struct dirent *de, int running,
                      const scan_opts_t *o) {
  rec_info_t r;
  entry_t *e;
  char id[ID_MAX + 1];
  unsigned long long ino = (unsigned long long)de->d_ino;
  const idx_slot_t *x;
  ssize_t n;
  if (!record_id(de->d_name, ".json", id)) return;
  if (running && faccessat(o->done_fd, de->d_name, F_OK, AT_SYMLINK_NOFOLLOW) == 0)
    return;  /* its end is recorded: the running file is a leftover */
  if (!running && (x = index_find(s, id, ino)) != NULL) {
    take_indexed(s, x, id, o);
    return;
  }
  if ((n = slurp(s, dirfd, de->d_name, &ino)) <= 0) return;
  s->misses += !running;
  if (scan_record(s->arena + s->used, &r) != 0) return;
  if (!running && r.has_expiry && r.expires_at <= o->now) return;
  if ((e = new_entry(s, id, ino)) == NULL) return;
  e->off = s->used;
  while (n > 0 && (s->arena[s->used + n - 1] == '\n' || s->arena[s->used + n - 1] == ' '))
    n--;  /* the newline at the end of the file */
  e->len = (size_t)n;
  e->started_at = r.started_at;
  e->expires_at = r.expires_at;
  e->has_expiry = r.has_expiry;
  e->cls = running ? classify(&r) : NULL;
  s->used += (size_t)n + 1;
}

/* Scans one subdirectory; -1 (errno) if it cannot be listed. */
static int scan_dir(scan_t *s, int dirfd, int running, const scan_opts_t *o) {
  struct dirent *de;
  DIR *d;
  int fd = openat(dirfd, ".", O_RDONLY | O_DIRECTORY | O_CLOEXEC);
  if (fd < 0 || (d = fdopendir(fd)) == NULL) {
    int err = errno;
    if (fd >= 0) close(fd);
    errno = err;
    return -1;
  }
  while ((de = readdir(d)) != NULL)
    if (de->d_name[0] != '.') scan_file(s, dirfd, de, running, o);
  closedir(d);
  return 0;
}

/* Newest first; ties by id, so that the order is stable. */
static int entry_cmp(const void *a, const void *b) {
  const entry_t *x = (const entry_t *)a, *y = (const entry_t *)b;
  if (x->started_at != y->started_at) return x->started_at < y->started_at ? 1 : -1;
  return strcmp(y->id, x->id);
}

/* }=== */

/* {=== MonDir objects ===} */

static mondir_t *check_dir(lua_State *L) {
  mondir_t *d = (mondir_t *)luaL_checkudata(L, 1, PM_MONDIR_MT);
  if (d->root < 0) luaL_error(L, "attempt to use a closed monitor");
  return d;
}

static int dir_close(lua_State *L) {
  mondir_t *d = (mondir_t *)luaL_checkudata(L, 1, PM_MONDIR_MT);
  for (int i = 0; i < SUB_COUNT; i++)
    if (d->sub[i] >= 0) close(d->sub[i]), d->sub[i] = -1;
  if (d->root >= 0) close(d->root), d->root = -1;
  return 0;
}

/* mondir.open(path) -> MonDir | nil, msg, code. Creates and checks the
** directory and its subdirectories like the state dir (0700, ours). */
static int dir_open(lua_State *L) {
  const char *path = luaL_checkstring(L, 1);
  mondir_t *d = (mondir_t *)lua_newuserdatauv(L, sizeof *d, 0);
  d->root = -1;
  for (int i = 0; i < SUB_COUNT; i++) d->sub[i] = -1;
  luaL_setmetatable(L, PM_MONDIR_MT);
  if ((d->root = pm_open_private_dir(L, path, "monitor dir")) < 0) return 3;
  for (int i = 0; i < SUB_COUNT; i++) {
    const char *sub = lua_pushfstring(L, "%s/%s", path, sub_names[i]);
    if ((d->sub[i] = pm_open_private_dir(L, sub, "monitor dir")) < 0) return 3;
    lua_pop(L, 1);
  }
  load_self();
  return 1;
}

static int check_sub(lua_State *L, int arg) {
  static const char *const opts[] = {"running", "done", "logs", NULL};
  return luaL_checkoption(L, arg, NULL, opts);
}

/* A file name from an id and an extension; raises on a bad id (no path
** may come out of an id). */
static const char *file_name(lua_State *L, int arg, const char *ext, char *buf) {
  size_t n;
  const char *id = luaL_checklstring(L, arg, &n);
  char check[ID_MAX + 1];
  snprintf(buf, NAME_BUF, "%.*s%s", (int)(n < ID_MAX ? n : ID_MAX + 1), id, ext);
  if (n > ID_MAX || !record_id(buf, ext, check))
    luaL_argerror(L, arg, "invalid record id");
  return buf;
}

/* Scans the records of d (argument 1; 2: all, 3: now) into a new scan
** userdata, pushed; or pushes the fail triple and returns NULL. */
static scan_t *scan_collect(lua_State *L) {
  mondir_t *d = check_dir(L);
  scan_opts_t o = {lua_toboolean(L, 2), luaL_optnumber(L, 3, pm_wall_time()),
                   d->sub[SUB_DONE]};
  scan_t *s = (scan_t *)lua_newuserdatauv(L, sizeof *s, 0);
  memset(s, 0, sizeof *s);
  luaL_setmetatable(L, PM_SCAN_MT);
  load_self();
  if (o.all) index_load(s, d->root);
  if (scan_dir(s, d->sub[SUB_RUNNING], 1, &o) != 0 ||
      (o.all && scan_dir(s, d->sub[SUB_DONE], 0, &o) != 0)) {
    pm_fail(L, pm_errno(), "monitor scan");
    return NULL;
  }
  if (o.all) index_save(s, d->root);
  if (s->n > 1) qsort(s->ents, s->n, sizeof *s->ents, entry_cmp);
  return s;
}

/* d:scan(all, now) -> texts, classes. Records newest first; classes[i] is
** the liveness class of a running record, nil for a finished one. */
static int dir_scan(lua_State *L) {
  scan_t *s = scan_collect(L);
  if (s == NULL) return 3;
  lua_createtable(L, (int)s->n, 0);
  lua_createtable(L, 0, 0);
  for (size_t i = 0; i < s->n; i++) {
    lua_pushlstring(L, entry_text(s, &s->ents[i]), s->ents[i].len);
    lua_rawseti(L, -3, (lua_Integer)i + 1);
    if (s->ents[i].cls) {
      lua_pushstring(L, s->ents[i].cls);
      lua_rawseti(L, -2, (lua_Integer)i + 1);
    }
  }
  return 2;
}

/* writev of 'n' pieces, in batches, until everything is written. */
static int write_pieces(int fd, struct iovec *iov, int n) {
  while (n > 0) {
    ssize_t w = writev(fd, iov, n < 1024 ? n : 1024);
    if (w < 0 && errno == EINTR) continue;
    if (w < 0) return -1;
    while (n > 0 && (size_t)w >= iov->iov_len) w -= (ssize_t)iov->iov_len, iov++, n--;
    if (n > 0) iov->iov_base = (char *)iov->iov_base + w, iov->iov_len -= (size_t)w;
  }
  return 0;
}

/* d:print_json(all, now) -> true, having written the records to stdout as
** one JSON array (newest first, one per line) | nil when a running record
** needs Lua first (lost, or owned by this process) | fail. `procrun ps
** --json` without a Lua string per record, nor one for them all. */
static int dir_print_json(lua_State *L) {
  static char open_s[] = "[\n", sep[] = ",\n", close_s[] = "\n]\n", empty[] = "[]\n";
  scan_t *s = scan_collect(L);
  struct iovec *iov;
  int n = 0;
  if (s == NULL) return 3;
  for (size_t i = 0; i < s->n; i++) {
    const char *c = s->ents[i].cls;
    if (c && strcmp(c, "alive") != 0 && strcmp(c, "ending") != 0) return 0;
  }
  iov = (struct iovec *)pm_scratch(L, (2 * s->n + 2) * sizeof *iov);
  iov[n].iov_base = s->n ? open_s : empty;
  iov[n++].iov_len = s->n ? 2 : 3;
  for (size_t i = 0; i < s->n; i++) {
    if (i > 0) iov[n].iov_base = sep, iov[n++].iov_len = 2;
    iov[n].iov_base = (char *)entry_text(s, &s->ents[i]);
    iov[n++].iov_len = s->ents[i].len;
  }
  if (s->n) iov[n].iov_base = close_s, iov[n++].iov_len = 3;
  fflush(stdout);  /* what Lua's io.stdout may hold goes first */
  if (write_pieces(STDOUT_FILENO, iov, n) != 0) return pm_fail(L, pm_errno(), "write");
  lua_pushboolean(L, 1);
  return 1;
}

/* d:read(where, id [, ext]) -> text [, class] | nil (missing) | fail. The
** class is given for a record read from running/. */
static int dir_read(lua_State *L) {
  mondir_t *d = check_dir(L);
  int sub = check_sub(L, 2);
  char name[NAME_BUF];
  scan_t s;
  ssize_t n;
  rec_info_t r;
  file_name(L, 3, luaL_optstring(L, 4, ".json"), name);
  memset(&s, 0, sizeof s);
  n = slurp(&s, d->sub[sub], name, NULL);
  if (n < 0) {
    int err = errno;
    free(s.arena);
    if (err == ENOENT) return 0;
    return pm_fail(L, uv_translate_sys_error(err), "monitor read '%s'", name);
  }
  lua_pushlstring(L, s.arena, (size_t)n);
  load_self();
  if (sub == SUB_RUNNING && scan_record(s.arena, &r) == 0) {
    free(s.arena);
    lua_pushstring(L, classify(&r));
    return 2;
  }
  free(s.arena);
  return 1;
}

static int write_all(int fd, const char *p, size_t n) {
  while (n > 0) {
    ssize_t w = write(fd, p, n);
    if (w < 0 && errno == EINTR) continue;
    if (w < 0) return -1;
    p += w;
    n -= (size_t)w;
  }
  return 0;
}

/* Moves tmp to name; with 'create', only if name does not exist yet. */
static int commit(int dirfd, const char *tmp, const char *name, int create) {
  if (!create) return renameat(dirfd, tmp, dirfd, name);
  if (renameat2(dirfd, tmp, dirfd, name, RENAME_NOREPLACE) == 0) return 0;
  if (errno != EINVAL && errno != ENOSYS) return -1;
  /* a filesystem without RENAME_NOREPLACE: link is exclusive too */
  if (linkat(dirfd, tmp, dirfd, name, 0) != 0) return -1;
  unlinkat(dirfd, tmp, 0);
  return 0;
}

/* Writes 'text' to a fresh temp file of dirfd and commits it as 'name'. */
static int write_file(int dirfd, const char *name, const char *text, size_t len,
                      int create) {
  static unsigned seq;
  char tmp[NAME_BUF];
  int fd, err;
  snprintf(tmp, sizeof tmp, ".tmp-%ld-%u", (long)getpid(), seq++);
  fd = openat(dirfd, tmp, O_WRONLY | O_CREAT | O_EXCL | O_NOFOLLOW | O_CLOEXEC, 0600);
  if (fd < 0) return -1;
  err = write_all(fd, text, len);
  if (close(fd) != 0) err = -1;
  if (err == 0 && commit(dirfd, tmp, name, create) == 0) return 0;
  err = errno;
  unlinkat(dirfd, tmp, 0);
  errno = err;
  return -1;
}

/* d:write(where, id, text [, "create"] [, ext]) -> true | false (create:
** the record exists already) | fail. Atomic: temp file + rename. */
static int dir_write(lua_State *L) {
  mondir_t *d = check_dir(L);
  int sub = check_sub(L, 2);
  size_t len;
  const char *text = luaL_checklstring(L, 4, &len);
  int create = lua_type(L, 5) == LUA_TSTRING && strcmp(lua_tostring(L, 5), "create") == 0;
  char name[NAME_BUF];
  file_name(L, 3, luaL_optstring(L, 6, ".json"), name);
  if (write_file(d->sub[sub], name, text, len, create) == 0) {
    lua_pushboolean(L, 1);
    return 1;
  }
  if (create && errno == EEXIST) {
    lua_pushboolean(L, 0);
    return 1;
  }
  return pm_fail(L, pm_errno(), "monitor write '%s/%s'", sub_names[sub], name);
}

/* d:remove(where, id [, ext]) -> true if a file was removed. */
static int dir_remove(lua_State *L) {
  mondir_t *d = check_dir(L);
  int sub = check_sub(L, 2);
  char name[NAME_BUF];
  file_name(L, 3, luaL_optstring(L, 4, ".json"), name);
  lua_pushboolean(L, unlinkat(d->sub[sub], name, 0) == 0);
  return 1;
}

/* d:exists(where, id [, ext]) -> boolean */
static int dir_exists(lua_State *L) {
  mondir_t *d = check_dir(L);
  int sub = check_sub(L, 2);
  char name[NAME_BUF];
  file_name(L, 3, luaL_optstring(L, 4, ".json"), name);
  lua_pushboolean(L, faccessat(d->sub[sub], name, F_OK, AT_SYMLINK_NOFOLLOW) == 0);
  return 1;
}

/* d:ids(where) -> the ids of the records in running/ or done/ (unsorted). */
static int dir_ids(lua_State *L) {
  mondir_t *d = check_dir(L);
  int sub = check_sub(L, 2), fd, n = 0;
  struct dirent *de;
  char id[ID_MAX + 1];
  DIR *dir;
  fd = openat(d->sub[sub], ".", O_RDONLY | O_DIRECTORY | O_CLOEXEC);
  if (fd < 0 || (dir = fdopendir(fd)) == NULL) {
    int err = pm_errno();
    if (fd >= 0) close(fd);
    return pm_fail(L, err, "monitor list '%s'", sub_names[sub]);
  }
  lua_newtable(L);
  while ((de = readdir(dir)) != NULL)
    if (de->d_name[0] != '.' && record_id(de->d_name, ".json", id)) {
      lua_pushstring(L, id);
      lua_rawseti(L, -2, ++n);
    }
  closedir(dir);
  return 1;
}

/* }=== */

/* {=== purge ===} */

/* A temp file whose writer is gone (or that is old): litter. */
static int stale_temp(int dirfd, const char *name, double now) {
  struct stat st;
  long pid = strtol(name + 5, NULL, 10);
  if (fstatat(dirfd, name, &st, AT_SYMLINK_NOFOLLOW) != 0 || S_ISDIR(st.st_mode))
    return 0;
  if ((double)st.st_mtim.tv_sec + STALE_TEMP < now) return 1;
  return pid > 0 && pid != (long)getpid() && kill((pid_t)pid, 0) != 0 && errno == ESRCH;
}

/* Removes the default log files of record 'id'. */
static void remove_logs(mondir_t *d, const char *id) {
  char name[NAME_BUF];
  snprintf(name, sizeof name, "%s.log", id);
  unlinkat(d->sub[SUB_LOGS], name, 0);
  snprintf(name, sizeof name, "%s.log.1", id);
  unlinkat(d->sub[SUB_LOGS], name, 0);
}

/* One file of done/: an expired (or unreadable) record goes with its logs. */
static int purge_done(mondir_t *d, const char *name, double now) {
  scan_t s;
  rec_info_t r;
  char id[ID_MAX + 1];
  ssize_t n;
  int gone = 0;
  if (strncmp(name, ".tmp-", 5) == 0)
    return stale_temp(d->sub[SUB_DONE], name, now) &&
           unlinkat(d->sub[SUB_DONE], name, 0) == 0;
  if (!record_id(name, ".json", id)) return 0;
  memset(&s, 0, sizeof s);
  n = slurp(&s, d->sub[SUB_DONE], name, NULL);
  if (n >= 0 && (scan_record(s.arena, &r) != 0 ||
                 (r.has_expiry && r.expires_at <= now)))
    gone = unlinkat(d->sub[SUB_DONE], name, 0) == 0;
  free(s.arena);
  if (gone) remove_logs(d, id);
  return gone;
}

/* One file of running/: a leftover whose end is recorded, a stop marker
** without its record, or stale temp file. */
static int purge_running(mondir_t *d, const char *name, double now) {
  char id[ID_MAX + 1], other[NAME_BUF];
  int fd = d->sub[SUB_RUNNING];
  if (strncmp(name, ".tmp-", 5) == 0)
    return stale_temp(fd, name, now) && unlinkat(fd, name, 0) == 0;
  if (record_id(name, ".json", id))
    return faccessat(d->sub[SUB_DONE], name, F_OK, AT_SYMLINK_NOFOLLOW) == 0 &&
           unlinkat(fd, name, 0) == 0;
  if (record_id(name, ".stop", id)) {
    snprintf(other, sizeof other, "%s.json", id);
    if (faccessat(fd, other, F_OK, AT_SYMLINK_NOFOLLOW) != 0) unlinkat(fd, name, 0);
  }
  return 0;
}

static int purge_sub(mondir_t *d, int sub, double now, lua_Integer *count) {
  struct dirent *de;
  DIR *dir;
  int fd = openat(d->sub[sub], ".", O_RDONLY | O_DIRECTORY | O_CLOEXEC);
  if (fd < 0 || (dir = fdopendir(fd)) == NULL) {
    if (fd >= 0) close(fd);
    return -1;
  }
  while ((de = readdir(dir)) != NULL) {
    if (strcmp(de->d_name, ".") == 0 || strcmp(de->d_name, "..") == 0) continue;
    *count += sub == SUB_DONE ? purge_done(d, de->d_name, now)
                              : purge_running(d, de->d_name, now);
  }
  closedir(dir);
  return 0;
}

/* d:purge([now]) -> number of records removed | fail. Expired finished
** records and their default logs, leftovers and stale temp files. */
static int dir_purge(lua_State *L) {
  mondir_t *d = check_dir(L);
  double now = luaL_optnumber(L, 2, pm_wall_time());
  lua_Integer count = 0;
  if (purge_sub(d, SUB_DONE, now, &count) != 0 ||
      purge_sub(d, SUB_RUNNING, now, &count) != 0)
    return pm_fail(L, pm_errno(), "monitor purge");
  lua_pushinteger(L, count);
  return 1;
}

/* }=== */

/* {=== the directory lock ===} */

typedef struct { int fd; } monlock_t;

/* d:lock() -> Lock | fail. An exclusive flock on <dir>/.lock, held until
** lock:unlock() (or __close/__gc). Blocks the process: hold it briefly. */
static int dir_lock(lua_State *L) {
  mondir_t *d = check_dir(L);
  monlock_t *k = (monlock_t *)lua_newuserdatauv(L, sizeof *k, 0);
  k->fd = -1;
  luaL_setmetatable(L, PM_MONLOCK_MT);
  k->fd = openat(d->root, ".lock", O_RDWR | O_CREAT | O_NOFOLLOW | O_CLOEXEC, 0600);
  if (k->fd < 0) return pm_fail(L, pm_errno(), "monitor lock");
  while (flock(k->fd, LOCK_EX) != 0) {
    if (errno == EINTR && !pm_interrupted()) continue;
    return pm_fail(L, errno == EINTR ? UV_EINTR : pm_errno(), "monitor lock");
  }
  return 1;
}

static int lock_unlock(lua_State *L) {
  monlock_t *k = (monlock_t *)luaL_checkudata(L, 1, PM_MONLOCK_MT);
  if (k->fd >= 0) close(k->fd), k->fd = -1;  /* closing drops the flock */
  return 0;
}

/* }=== */

/* {=== capped log files ===} */

typedef struct monlog {
  int fd;
  size_t size, max;
  char path[1];  /* the rest of the userdata */
} monlog_t;

static int log_reopen(monlog_t *g) {
  struct stat st;
  g->fd = open(g->path, O_WRONLY | O_APPEND | O_CREAT | O_NOFOLLOW | O_CLOEXEC, 0600);
  if (g->fd < 0) return -1;
  g->size = fstat(g->fd, &st) == 0 ? (size_t)st.st_size : 0;
  return 0;
}

/* mondir.log_open(path, max) -> Log | fail. Appends; at 'max' bytes the
** file becomes path.1 (replacing the previous one) and a new one starts. */
static int log_open(lua_State *L) {
  size_t n;
  const char *path = luaL_checklstring(L, 1, &n);
  lua_Integer max = luaL_checkinteger(L, 2);
  monlog_t *g;
  luaL_argcheck(L, max > 0, 2, "must be a positive number of bytes");
  g = (monlog_t *)lua_newuserdatauv(L, sizeof *g + n, 0);
  g->fd = -1;
  g->max = (size_t)max;
  memcpy(g->path, path, n + 1);
  luaL_setmetatable(L, PM_MONLOG_MT);
  if (log_reopen(g) != 0) return pm_fail(L, pm_errno(), "log '%s'", path);
  return 1;
}

static int log_rotate(lua_State *L, monlog_t *g) {
  const char *old = lua_pushfstring(L, "%s.1", g->path);
  close(g->fd);
  g->fd = -1;
  rename(g->path, old);
  lua_pop(L, 1);
  return log_reopen(g);
}

/* log:write(data) -> true | fail. Never more than max bytes per file. */
static int log_write(lua_State *L) {
  monlog_t *g = (monlog_t *)luaL_checkudata(L, 1, PM_MONLOG_MT);
  size_t len;
  const char *p = luaL_checklstring(L, 2, &len);
  if (g->fd < 0) return luaL_error(L, "attempt to use a closed log");
  while (len > 0) {
    size_t room = g->size < g->max ? g->max - g->size : 0, k;
    if (room == 0) {
      if (log_rotate(L, g) != 0) return pm_fail(L, pm_errno(), "log '%s'", g->path);
      continue;
    }
    k = len < room ? len : room;
    if (write_all(g->fd, p, k) != 0) return pm_fail(L, pm_errno(), "log '%s'", g->path);
    g->size += k;
    p += k;
    len -= k;
  }
  lua_pushboolean(L, 1);
  return 1;
}

static int log_close(lua_State *L) {
  monlog_t *g = (monlog_t *)luaL_checkudata(L, 1, PM_MONLOG_MT);
  if (g->fd >= 0) close(g->fd), g->fd = -1;
  return 0;
}

/* }=== */

/* {=== process helpers ===} */

/* mondir.self() -> pid, start_time, boot_id of this process. */
static int m_self(lua_State *L) {
  load_self();
  lua_pushinteger(L, (lua_Integer)getpid());
  lua_pushinteger(L, (lua_Integer)self_start);
  lua_pushstring(L, boot_id);
  return 3;
}

/* Now in the unit of /proc/<pid>/stat's start time: the kernel divides
** the boot-time clock (CLOCK_BOOTTIME, in ns) by 1e9 / USER_HZ. */
static ticks_t boot_ticks(void) {
  struct timespec ts;
  long hz = sysconf(_SC_CLK_TCK);
  if (hz <= 0 || 1000000000L % hz != 0 || clock_gettime(CLOCK_BOOTTIME, &ts) != 0)
    return 0;
  return (ticks_t)ts.tv_sec * (ticks_t)hz + (ticks_t)ts.tv_nsec / (ticks_t)(1000000000L / hz);
}

/* mondir.ticks() -> now, in start-time ticks (0 if unknown). */
static int m_ticks(lua_State *L) {
  lua_pushinteger(L, (lua_Integer)boot_ticks());
  return 1;
}

/*
** mondir.start_time(pid [, before]) -> start time (a zombie's too) | nil.
** 'before' is mondir.ticks() read just before the child was forked: when
** the clock still shows that tick, the child started in it, exactly. This
** spares reading /proc of a child in the middle of its exec, which waits
** for the exec (a millisecond on a busy machine, per monitored spawn).
*/
static int m_start_time(lua_State *L) {
  lua_Integer pid = luaL_checkinteger(L, 1), before = luaL_optinteger(L, 2, 0);
  char state;
  ticks_t t;
  if (before > 0 && boot_ticks() == (ticks_t)before) {
    lua_pushinteger(L, before);
    return 1;
  }
  if (proc_stat((long)pid, &state, &t) != 0) return 0;
  lua_pushinteger(L, (lua_Integer)t);
  return 1;
}

/* mondir.alive(pid, start_time) -> is that very process alive? */
static int m_alive(lua_State *L) {
  lua_Integer pid = luaL_checkinteger(L, 1), start = luaL_checkinteger(L, 2);
  lua_pushboolean(L, proc_alive((long)pid, (ticks_t)start));
  return 1;
}

/*
** mondir.kill(pid, start_time, pgid, sig) -> true | fail. Signals the
** group of the process that is pid *and* started at start_time. The pidfd
** is opened before the start time is checked, so a pid reused after the
** check cannot be mistaken for the leader.
*/
static int m_kill(lua_State *L) {
  lua_Integer pid = luaL_checkinteger(L, 1), start = luaL_checkinteger(L, 2);
  lua_Integer pgid = luaL_checkinteger(L, 3);
  int sig = pm_signal_arg(L, 4, "TERM"), err = 0;
  int pfd = pid > 0 ? pidfd_open((pid_t)pid, 0) : -1;
  if (pid <= 0 || !proc_alive((long)pid, (ticks_t)start)) {
    if (pfd >= 0) close(pfd);
    return pm_fail(L, UV_ESRCH, "kill %d", (int)pid);
  }
  if (pgid > 0 && kill(-(pid_t)pgid, sig) == 0) err = 0;
  else if (pfd >= 0) err = pidfd_send_signal(pfd, sig, NULL, 0) == 0 ? 0 : pm_errno();
  else err = kill((pid_t)pid, sig) == 0 ? 0 : pm_errno();
  if (pfd >= 0) close(pfd);
  if (err) return pm_fail(L, err, "kill %d", (int)pid);
  lua_pushboolean(L, 1);
  return 1;
}

/* mondir.new_id() -> a fresh 7-character id (35 bits of randomness). */
static int m_new_id(lua_State *L) {
  static const char alphabet[] = "abcdefghijkmnpqrstuvwxyz23456789";
  unsigned char r[7];
  char id[8];
  if (getrandom(r, sizeof r, 0) != (ssize_t)sizeof r) {
    for (size_t i = 0; i < sizeof r; i++) r[i] = (unsigned char)rand();
  }
  for (size_t i = 0; i < sizeof r; i++) id[i] = alphabet[r[i] & 31];
  lua_pushlstring(L, id, sizeof r);
  return 1;
}

/* mondir.cwd() -> the current directory | fail. */
static int m_cwd(lua_State *L) {
  char buf[4096];
  if (getcwd(buf, sizeof buf) == NULL) return pm_fail(L, pm_errno(), "getcwd");
  lua_pushstring(L, buf);
  return 1;
}

/* mondir.tty(fd) -> is a terminal, its width (or nil). */
static int m_tty(lua_State *L) {
  int fd = (int)luaL_checkinteger(L, 1);
  struct winsize ws;
  lua_pushboolean(L, isatty(fd));
  if (ioctl(fd, TIOCGWINSZ, &ws) == 0 && ws.ws_col > 0) lua_pushinteger(L, ws.ws_col);
  else lua_pushnil(L);
  return 2;
}

/* mondir.file_id(path) -> "dev:ino", size | nil (logs -f sees rotations). */
static int m_file_id(lua_State *L) {
  struct stat st;
  if (stat(luaL_checkstring(L, 1), &st) != 0) return 0;
  lua_pushfstring(L, "%d:%I", (int)st.st_dev, (lua_Integer)st.st_ino);
  lua_pushinteger(L, (lua_Integer)st.st_size);
  return 2;
}

/* }=== */

int pm_open_mondir(lua_State *L) {
  static const luaL_Reg dir_m[] = {
    {"scan", dir_scan}, {"print_json", dir_print_json}, {"read", dir_read}, {"write", dir_write},
    {"remove", dir_remove}, {"exists", dir_exists}, {"ids", dir_ids},
    {"purge", dir_purge}, {"lock", dir_lock}, {"close", dir_close},
    {"__gc", dir_close}, {"__close", dir_close}, {NULL, NULL}
  };
  static const luaL_Reg lock_m[] = {
    {"unlock", lock_unlock}, {"__gc", lock_unlock}, {"__close", lock_unlock}, {NULL, NULL}
  };
  static const luaL_Reg log_m[] = {
    {"write", log_write}, {"close", log_close}, {"__gc", log_close},
    {"__close", log_close}, {NULL, NULL}
  };
  static const luaL_Reg scan_m[] = {{"__gc", scan_gc}, {NULL, NULL}};
  static const luaL_Reg funcs[] = {
    {"open", dir_open}, {"log_open", log_open}, {"self", m_self},
    {"start_time", m_start_time}, {"ticks", m_ticks}, {"alive", m_alive}, {"kill", m_kill},
    {"new_id", m_new_id}, {"cwd", m_cwd}, {"tty", m_tty}, {"file_id", m_file_id},
    {NULL, NULL}
  };
  pm_new_class(L, PM_MONDIR_MT, dir_m);
  pm_new_class(L, PM_MONLOCK_MT, lock_m);
  pm_new_class(L, PM_MONLOG_MT, log_m);
  pm_new_class(L, PM_SCAN_MT, scan_m);
  luaL_newlib(L, funcs);
  return 1;
}
