/*
** Cache store: one JSON file per key in a private directory, the C half of
** procmon.cache (lua/procmon/cache.lua adds update/remember and the checks).
** The records are written and read with the project's JSON codec
** (src/pm_json.c).
**
** - File names: a key made only of safe bytes keeps a readable name, other
**   bytes are %XX-escaped; a key whose name would pass NAME_ENC_MAX bytes is
**   named "~" + SHA-256 (hex). Names are injective, never start with '.',
**   and the record inside repeats the key, which is checked on every read.
** - Writes: a ".tmp-<pid>-<n>" file (O_CREAT|O_EXCL|O_NOFOLLOW, 0600) in
**   the same directory, write, optional fsync, rename over the entry: a
**   reader sees the old entry or the new one, never a part.
** - Reads: O_NOFOLLOW|O_NONBLOCK, fstat must say a regular file of at most
**   PM_ENTRY_MAX bytes; anything else (symlink, fifo, huge, junk, wrong
**   shape) reads as a miss.
** - Locks for update: flock on ".lock-<name>", unlinked by the holder before
**   it lets go; a waiter that wakes on an unlinked lock file retries.
*/
#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/file.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#include "pm_json.h"

#define PM_STORE_MT "procmon.Store"
#define PM_LOCK_MT "procmon.StoreLock"
#define PM_DIRBOX_MT "procmon.DirBox"

#define NAME_BUF 256        /* any file name in the directory fits */
#define NAME_ENC_MAX 195    /* longest escaped key before ".json" */
#define READ_STACK 8192     /* entries this small are read on the C stack */
#define ENTRY_MAX (64 << 20) /* bigger entry files are misses, never read */
#define STALE_AGE 3600      /* a temp file this old is stale, pid or not */

typedef struct store {
  int dirfd;                /* -1 once closed */
  int lockfd;               /* ".lock", opened on first use; -1 before */
  int durable;              /* fsync file and directory on every write */
  dev_t dev;                /* the directory's identity, for in-process */
  ino_t ino;                /* lock bookkeeping (see cache.lua) */
} store_t;

typedef struct lock {
  int fd;                   /* -1 once released */
  store_t *store;           /* kept alive by the lock's user value */
  char name[NAME_BUF + 8];  /* ".lock-<entry name>" */
} lock_t;

/* {=== file names ===} */

static int name_safe(unsigned char c) {
  return (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') ||
         (c >= '0' && c <= '9') || (c != 0 && strchr("-_.:@+,=", c));
}

/*
** Writes the entry file name of 'key' to 'out' (NAME_BUF bytes): the key
** with every unsafe byte (and a leading '.') as %XX, or "~" + SHA-256 when
** that would be too long; "%" stands for the empty key; then ".json".
*/
static void key_to_name(const char *key, size_t len, char *out) {
  static const char hex[] = "0123456789ABCDEF";
  size_t n = 0, i;
  if (len == 0) out[n++] = '%';
  for (i = 0; i < len && n + 3 <= NAME_ENC_MAX; i++) {
    unsigned char c = (unsigned char)key[i];
    if (name_safe(c) && !(i == 0 && c == '.')) {
      out[n++] = (char)c;
    } else {
      out[n++] = '%';
      out[n++] = hex[c >> 4];
      out[n++] = hex[c & 15];
    }
  }
  if (i < len) {
    out[0] = '~';
    pm_sha256_hex(key, len, out + 1);
    n = 65;
  }
  memcpy(out + n, ".json", 6);
}

static int hex_value(char c) {
  if (c >= '0' && c <= '9') return c - '0';
  if (c >= 'A' && c <= 'F') return c - 'A' + 10;
  return -1;
}

/* Is 'name' an entry file (not ours-internal, ends in ".json")? */
static int is_entry_name(const char *name, size_t len) {
  return len > 5 && name[0] != '.' && strcmp(name + len - 5, ".json") == 0;
}

/*
** Pushes the key that the entry file 'name' stands for and returns 1; or
** returns 0 (pushing nothing) for a hashed or foreign name. A name counts
** only if the key maps back to exactly that name.
*/
static int name_to_key(lua_State *L, const char *name, size_t len) {
  char key[NAME_BUF], back[NAME_BUF];
  size_t n = 0;
  if (!is_entry_name(name, len) || name[0] == '~' || len >= NAME_BUF) return 0;
  len -= 5;
  for (size_t i = 0; i < len; i++) {
    if (name[i] != '%') {
      key[n++] = name[i];
    } else if (i + 2 < len && hex_value(name[i + 1]) >= 0 &&
               hex_value(name[i + 2]) >= 0) {
      key[n++] = (char)(hex_value(name[i + 1]) * 16 + hex_value(name[i + 2]));
      i += 2;
    } else if (len != 1) {
      return 0;
    }
  }
  key_to_name(key, n, back);
  if (strcmp(back, name) != 0) return 0;
  lua_pushlstring(L, key, n);
  return 1;
}

/* }=== */

/* {=== records ===} */

/*
** Encodes {"key":..,"expires_at":..,"value":..}\n for the value at 'v'.
** 'expires' < 0 means no expiry. Leaves the buffer on the stack; returns 0,
** or -1 with the message in e->err.
*/
static int enc_record(pm_jenc_t *e, const char *key, size_t klen, double expires,
                      int v) {
  char buf[64];
  pm_jenc_init(e->L, e, 512 + klen);
  pm_jenc_lit(e, "{\"key\":");
  pm_jenc_string(e, key, klen);
  if (expires < 0) {
    pm_jenc_lit(e, ",\"expires_at\":null,\"value\":");
  } else {  /* milliseconds are precise enough for a TTL */
    pm_jenc_lit(e, ",\"expires_at\":");
    if (expires < 1e12)
      pm_jenc_add(e, buf, pm_json_fixed(buf, (long long)(expires * 1000 + 0.5), 3));
    else  /* a ttl of ages */
      pm_jenc_add(e, buf, pm_json_double(buf, expires, 0));
    pm_jenc_lit(e, ",\"value\":");
  }
  if (pm_jenc_value(e, v)) return -1;
  pm_jenc_lit(e, "}\n");
  return 0;
}

/*
** Pushes the record in s[0..n), which must be one JSON value and nothing
** else; or returns -1, pushing nothing. The value inside the record is one
** level deeper than the record: what set could encode, get can decode.
*/
static int record_decode(lua_State *L, const char *s, size_t n) {
  pm_jerr_t err;
  size_t next = pm_json_decode(L, s, n, 0, PM_JSON_MAX_DEPTH + 1, &err);
  if (next == n) return 0;
  if (next != (size_t)-1) lua_pop(L, 1);  /* trailing bytes */
  return -1;
}

/* }=== */

/* {=== entry files ===} */

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

/* Creates a fresh ".tmp-<pid>-<n>" file; returns its descriptor or -1. */
static int temp_create(store_t *s, char *tmp) {
  static unsigned seq;
  for (int tries = 0; tries < 1000; tries++) {
    int fd;
    snprintf(tmp, NAME_BUF, ".tmp-%ld-%u", (long)getpid(), seq++);
    fd = openat(s->dirfd, tmp, O_WRONLY | O_CREAT | O_EXCL | O_NOFOLLOW |
                O_CLOEXEC, 0600);
    if (fd >= 0 || errno != EEXIST) return fd;
  }
  return -1;
}

/*
** The directory lock ".lock" (created on first use) lets a removal of an
** expired or bad entry be sure that it removes that entry and not a fresh
** one renamed over it meanwhile: POSIX has no "unlink if still this
** inode". Writers hold the lock shared (LOCK_SH) while they rename an
** entry in; a removal holds it exclusive for the check and the unlink, so
** no writer of ours can slip in between. It is held for a few system calls
** only, never while Lua runs. Readers never take it. 'op' is LOCK_SH or
** LOCK_EX | LOCK_NB; the wait for LOCK_SH gives up once the host was asked
** to stop. Returns 0, or -1 (errno).
*/
static int dir_lock(store_t *s, int op) {
  if (s->lockfd < 0) {
    /* Read-only: flock needs no more, and a file open for writing would
    ** keep the filesystem from being remounted read-only. */
    s->lockfd = openat(s->dirfd, ".lock", O_RDONLY | O_CREAT | O_NOFOLLOW |
                       O_CLOEXEC, 0600);
    if (s->lockfd < 0) return -1;
  }
  while (flock(s->lockfd, op) != 0)
    if (errno != EINTR || pm_interrupted()) return -1;
  return 0;
}

/*
** Replaces the entry 'name' with 'len' bytes at 'p', atomically: temp file,
** write, (fsync), rename under the shared directory lock, (fsync the
** directory). Returns 0 or -1 (errno).
*/
static int entry_commit(store_t *s, const char *name, const char *p,
                        size_t len) {
  char tmp[NAME_BUF];
  int err, fd = temp_create(s, tmp);
  if (fd < 0) return -1;
  if (write_all(fd, p, len) != 0 || (s->durable && fsync(fd) != 0))
    goto fail;
  err = close(fd);
  fd = -1;
  if (err != 0 || dir_lock(s, LOCK_SH) != 0) goto fail;
  err = renameat(s->dirfd, tmp, s->dirfd, name);
  flock(s->lockfd, LOCK_UN);
  if (err != 0) goto fail;
  return s->durable ? fsync(s->dirfd) : 0;
fail:
  err = errno;
  if (fd >= 0) close(fd);
  unlinkat(s->dirfd, tmp, 0);
  errno = err;
  return -1;
}

/* Is 'a' still the file that was seen as 'b' (same inode and version)? */
static int same_file(const struct stat *a, const struct stat *b) {
  return a->st_dev == b->st_dev && a->st_ino == b->st_ino &&
         a->st_size == b->st_size &&
         a->st_mtim.tv_sec == b->st_mtim.tv_sec &&
         a->st_mtim.tv_nsec == b->st_mtim.tv_nsec;
}

/*
** Moves the entry 'name' aside and drops it if it is the file 'seen'; puts
** it back otherwise (unless an even newer one arrived meanwhile). Under the
** directory lock only a foreign writer, one that does not take the lock,
** can have renamed a file in since the check: this keeps its entry, which
** is invisible only for the moment it is aside. purge() restores one left
** aside by a process killed there. Returns 1 when removed.
*/
static int entry_drop_aside(store_t *s, const char *name,
                            const struct stat *seen) {
  char aside[NAME_BUF * 2];
  struct stat st;
  int gone;
  snprintf(aside, sizeof aside, ".del-%ld-%s", (long)getpid(), name);
  if (renameat(s->dirfd, name, s->dirfd, aside) != 0) return 0;
  gone = fstatat(s->dirfd, aside, &st, AT_SYMLINK_NOFOLLOW) == 0 &&
         same_file(&st, seen);
  if (!gone) linkat(s->dirfd, aside, s->dirfd, name, 0);
  unlinkat(s->dirfd, aside, 0);
  return gone;
}

/*
** Removes the entry 'name' only if it is still the file 'seen' (expired,
** corrupt or too big), never a fresh one a writer just renamed in, and
** without hiding that one even for a moment: under the exclusive directory
** lock no writer of ours can rename in, so a file still 'seen' stays so
** until it is gone. The lock is only tried: while a write is in progress
** the entry stays for the next get or purge. Returns 1 when removed.
*/
static int entry_unlink_if(store_t *s, const char *name,
                           const struct stat *seen) {
  struct stat st;
  int gone = 0;
  if (strlen(name) > NAME_ENC_MAX + 5)  /* a foreign name: no writer races */
    return unlinkat(s->dirfd, name, 0) == 0;
  if (dir_lock(s, LOCK_EX | LOCK_NB) != 0) return 0;
  if (fstatat(s->dirfd, name, &st, AT_SYMLINK_NOFOLLOW) == 0 &&
      same_file(&st, seen))
    gone = entry_drop_aside(s, name, seen);
  flock(s->lockfd, LOCK_UN);
  return gone;
}

enum { LOAD_OK, LOAD_MISS, LOAD_BAD, LOAD_ERR };

/*
** Reads the st_size bytes of 'fd' (an entry never changes once renamed in,
** so there is no need for a read that returns 0); the bytes are at *out.
*/
static ssize_t read_fd(lua_State *L, int fd, const struct stat *st,
                       char *stackbuf, char **out) {
  size_t size = (size_t)st->st_size, n = 0;
  char *buf = size <= READ_STACK ? stackbuf : pm_scratch(L, size);
  while (n < size) {
    ssize_t r = read(fd, buf + n, size - n);
    if (r < 0 && errno == EINTR) continue;
    if (r < 0) return -1;
    if (r == 0) break;
    n += (size_t)r;
  }
  *out = buf;
  return (ssize_t)n;
}

/*
** Checks an opened entry file: LOAD_OK to read it, LOAD_MISS for no regular
** file, LOAD_ERR (errno). A file over ENTRY_MAX is LOAD_BAD, a miss that
** purge removes: it is junk (maybe a sparse terabyte), never read whole,
** so it cannot exhaust memory.
*/
static int entry_stat(int fd, struct stat *st) {
  if (fstat(fd, st) != 0) return LOAD_ERR;
  if (!S_ISREG(st->st_mode)) return LOAD_MISS;
  return st->st_size > ENTRY_MAX ? LOAD_BAD : LOAD_OK;
}

/*
** Opens, reads and decodes the entry file 'name' and pushes its record
** (LOAD_OK), or pushes nothing: LOAD_MISS (absent, symlink, not a regular
** file), LOAD_BAD (not a record, or too big), LOAD_ERR (I/O error, errno set). 'st' gets
** the file's identity for entry_unlink_if.
*/
static int entry_load(lua_State *L, store_t *s, const char *name,
                      struct stat *st) {
  char stackbuf[READ_STACK], *buf;
  int top = lua_gettop(L), err, r;
  ssize_t n;
  int fd = openat(s->dirfd, name, O_RDONLY | O_NOFOLLOW | O_NONBLOCK |
                  O_CLOEXEC);
  if (fd < 0)
    return errno == ENOENT || errno == ELOOP || errno == ENXIO ? LOAD_MISS
                                                                : LOAD_ERR;
  if ((r = entry_stat(fd, st)) == LOAD_OK) n = read_fd(L, fd, st, stackbuf, &buf);
  err = errno;
  close(fd);
  errno = err;
  if (r != LOAD_OK) return r;
  if (n < 0) {
    lua_settop(L, top);
    return LOAD_ERR;
  }
  r = record_decode(L, buf, (size_t)n) == 0 ? LOAD_OK : LOAD_BAD;
  if (lua_gettop(L) > top + 1) lua_remove(L, top + 1);  /* the scratch */
  return r;
}

/* expires_at: a number, null, or no such field. */
static int expiry_ok(int type, lua_State *L) {
  return type == LUA_TNUMBER || type == LUA_TNIL ||
         (type == LUA_TLIGHTUSERDATA && lua_touserdata(L, -1) == NULL);
}

/*
** Checks the record on top of the stack against the file name it came
** from; replaces it with its value and pushes expires_at (a number, or nil
** when the entry never expires). Returns 0, or -1 (record popped) for a
** wrong shape. 'key' is the key looked up, or NULL to accept any key whose
** file name is 'name' (then the key is pushed too, under the value).
*/
static int record_open(lua_State *L, const char *key, size_t klen,
                       const char *name) {
  size_t n;
  const char *k;
  char back[NAME_BUF];
  int t = lua_gettop(L), ok = lua_type(L, t) == LUA_TTABLE;
  if (ok && lua_getfield(L, t, "key") == LUA_TSTRING) {
    k = lua_tolstring(L, -1, &n);
    if (key)
      ok = n == klen && memcmp(k, key, n) == 0;
    else
      key_to_name(k, n, back), ok = strcmp(back, name) == 0;
  } else {
    ok = 0;
  }
  ok = ok && lua_getfield(L, t, "value") != LUA_TNIL;
  ok = ok && expiry_ok(lua_getfield(L, t, "expires_at"), L);
  if (!ok) {
    lua_settop(L, t - 1);
    return -1;
  }
  if (lua_type(L, -1) != LUA_TNUMBER) lua_pushnil(L), lua_replace(L, -2);
  lua_remove(L, t);
  if (key) lua_remove(L, t);  /* the key, known already */
  return 0;
}

/* Is the entry with expires_at at 'idx' (number or nil) expired at 'now'? */
static int is_expired(lua_State *L, int idx, double now) {
  return lua_type(L, idx) == LUA_TNUMBER && lua_tonumber(L, idx) <= now;
}

/* }=== */

/* {=== Store objects ===} */

static store_t *check_store(lua_State *L) {
  store_t *s = luaL_checkudata(L, 1, PM_STORE_MT);
  if (s->dirfd < 0) luaL_error(L, "attempt to use a closed cache");
  return s;
}

/* store.open(path, durable) -> Store | nil, msg, code */
static int store_open(lua_State *L) {
  size_t n;
  const char *path = luaL_checklstring(L, 1, &n);
  int durable = lua_toboolean(L, 2);
  store_t *s;
  struct stat st;
  while (n > 1 && path[n - 1] == '/') n--;
  path = lua_pushlstring(L, path, n);
  s = lua_newuserdatauv(L, sizeof *s, 0);
  s->dirfd = s->lockfd = -1;
  s->durable = durable;
  luaL_setmetatable(L, PM_STORE_MT);
  s->dirfd = pm_open_private_dir(L, path, "cache dir");
  if (s->dirfd < 0) return 3;
  if (fstat(s->dirfd, &st) != 0) return pm_fail(L, pm_errno(), "cache dir");
  s->dev = st.st_dev;
  s->ino = st.st_ino;
  return 1;
}

static int store_close(lua_State *L) {
  store_t *s = luaL_checkudata(L, 1, PM_STORE_MT);
  if (s->dirfd >= 0) close(s->dirfd);
  if (s->lockfd >= 0) close(s->lockfd);
  s->dirfd = s->lockfd = -1;
  return 0;
}

/* st:ident() -> "<dev>:<ino>:", the directory's identity, however named */
static int store_ident(lua_State *L) {
  store_t *s = check_store(L);
  lua_pushfstring(L, "%I:%I:", (lua_Integer)s->dev, (lua_Integer)s->ino);
  return 1;
}

/* st:name(key) -> the entry's file name */
static int store_name(lua_State *L) {
  size_t klen;
  const char *key;
  char name[NAME_BUF];
  check_store(L);
  key = luaL_checklstring(L, 2, &klen);
  key_to_name(key, klen, name);
  lua_pushstring(L, name);
  return 1;
}

/*
** st:get(key) -> value, expires_at | nil (a miss) | nil, msg, code
** An expired entry is removed on the way; a bad one is left to purge().
*/
static int store_get(lua_State *L) {
  store_t *s = check_store(L);
  size_t klen;
  const char *key = luaL_checklstring(L, 2, &klen);
  char name[NAME_BUF];
  struct stat st;
  int r;
  key_to_name(key, klen, name);
  r = entry_load(L, s, name, &st);
  if (r == LOAD_ERR) return pm_fail(L, pm_errno(), "cache get '%s'", name);
  if (r != LOAD_OK || record_open(L, key, klen, NULL) != 0) {
    luaL_pushfail(L);
    return 1;
  }
  if (is_expired(L, -1, pm_wall_time())) {
    entry_unlink_if(s, name, &st);
    luaL_pushfail(L);
    return 1;
  }
  return 2;
}

/*
** st:set(key, value, expires_at|nil) -> true | false, why | nil, msg, code
** 'false, why' is a value that cannot be encoded; then nothing is written,
** as for a record over ENTRY_MAX (EFBIG).
*/
static int store_set(lua_State *L) {
  store_t *s = check_store(L);
  size_t klen;
  const char *key = luaL_checklstring(L, 2, &klen);
  double expires = luaL_optnumber(L, 4, -1);
  char name[NAME_BUF];
  pm_jenc_t e;
  luaL_checkany(L, 3);
  e.L = L;
  if (enc_record(&e, key, klen, expires, 3) != 0) {
    lua_pushboolean(L, 0);
    lua_pushstring(L, e.err);
    return 2;
  }
  key_to_name(key, klen, name);
  if (e.len > ENTRY_MAX)  /* get would not read it */
    return pm_fail(L, UV_EFBIG, "cache set '%s' (%I bytes, limit %d MiB)",
                   name, (lua_Integer)e.len, ENTRY_MAX >> 20);
  if (entry_commit(s, name, e.p, e.len) != 0)
    return pm_fail(L, pm_errno(), "cache set '%s'", name);
  pm_jenc_keep(&e);
  lua_pushboolean(L, 1);
  return 1;
}

/* st:delete(key) -> true (removed) | false (absent) | nil, msg, code */
static int store_delete(lua_State *L) {
  store_t *s = check_store(L);
  size_t klen;
  const char *key = luaL_checklstring(L, 2, &klen);
  char name[NAME_BUF];
  key_to_name(key, klen, name);
  if (unlinkat(s->dirfd, name, 0) != 0) {
    if (errno == ENOENT) return lua_pushboolean(L, 0), 1;
    return pm_fail(L, pm_errno(), "cache delete '%s'", name);
  }
  if (s->durable && fsync(s->dirfd) != 0)
    return pm_fail(L, pm_errno(), "cache delete '%s'", name);
  lua_pushboolean(L, 1);
  return 1;
}

/* {=== listing and purge ===} */

static int dirbox_gc(lua_State *L) {
  DIR **box = luaL_checkudata(L, 1, PM_DIRBOX_MT);
  if (*box) closedir(*box);
  *box = NULL;
  return 0;
}

static int dir_skip(const char *name, int all) {
  if (!all) return !is_entry_name(name, strlen(name));
  return strcmp(name, ".") == 0 || strcmp(name, "..") == 0;
}

/*
** Pushes an array of the names in the directory: every one ('all') or the
** entry files only. The DIR lives in a box, closed even on a raise.
** Returns 0, or -1 (errno) pushing nothing.
*/
static int dir_names(lua_State *L, store_t *s, int all) {
  DIR **box = lua_newuserdatauv(L, sizeof *box, 0);
  struct dirent *de;
  lua_Integer n = 0;
  int err, fd;
  *box = NULL;
  luaL_setmetatable(L, PM_DIRBOX_MT);
  fd = openat(s->dirfd, ".", O_RDONLY | O_DIRECTORY | O_CLOEXEC);
  if (fd < 0 || (*box = fdopendir(fd)) == NULL) {
    err = errno;
    if (fd >= 0) close(fd);
    lua_pop(L, 1);
    errno = err;
    return -1;
  }
  lua_newtable(L);
  for (errno = 0; (de = readdir(*box)) != NULL; errno = 0) {
    if (dir_skip(de->d_name, all)) continue;
    lua_pushstring(L, de->d_name);
    lua_rawseti(L, -2, ++n);
  }
  err = errno;
  closedir(*box);
  *box = NULL;
  lua_remove(L, -2);  /* the box */
  if (err) lua_pop(L, 1);
  errno = err;
  return err ? -1 : 0;
}

/* Pushes the key of the entry 'name' if it is live and has 'prefix'. */
static int key_listed(lua_State *L, store_t *s, const char *name,
                      const char *prefix, size_t plen, double now) {
  struct stat st;
  size_t klen;
  const char *k;
  int top = lua_gettop(L), live;
  if (name_to_key(L, name, strlen(name))) {  /* no need to read it */
    k = lua_tolstring(L, -1, &klen);
    live = klen >= plen && memcmp(k, prefix, plen) == 0;
    lua_settop(L, top);
    if (!live) return 0;
  }
  if (entry_load(L, s, name, &st) != LOAD_OK ||
      record_open(L, NULL, 0, name) != 0)
    return 0;
  k = lua_tolstring(L, top + 1, &klen);
  live = !is_expired(L, -1, now);
  if (!live) entry_unlink_if(s, name, &st);
  live = live && klen >= plen && memcmp(k, prefix, plen) == 0;
  lua_settop(L, live ? top + 1 : top);
  return live;
}

/* st:keys([prefix]) -> { key, ... } (unsorted) | nil, msg, code */
static int store_keys(lua_State *L) {
  store_t *s = check_store(L);
  size_t plen;
  const char *prefix = luaL_optlstring(L, 2, "", &plen);
  double now = pm_wall_time();
  lua_Integer n = 0;
  lua_settop(L, 2);
  if (dir_names(L, s, 0) != 0) return pm_fail(L, pm_errno(), "cache keys");
  lua_newtable(L);
  for (lua_Integer i = 1; lua_rawgeti(L, 3, i) == LUA_TSTRING; i++) {
    int found = key_listed(L, s, lua_tostring(L, 5), prefix, plen, now);
    if (found) lua_rawseti(L, 4, ++n);
    lua_settop(L, 4);
  }
  lua_settop(L, 4);
  return 1;
}

/* Is there still a process 'pid' (a zombie nobody reaped counts as gone)? */
static int pid_alive(long pid) {
  char path[64], buf[512], *p;
  ssize_t n;
  int fd;
  if (kill((pid_t)pid, 0) != 0 && errno == ESRCH) return 0;
  snprintf(path, sizeof path, "/proc/%ld/stat", pid);
  if ((fd = open(path, O_RDONLY | O_CLOEXEC)) < 0) return 1;
  n = read(fd, buf, sizeof buf - 1);
  close(fd);
  buf[n > 0 ? n : 0] = '\0';
  p = strrchr(buf, ')');
  return !(p && p[1] == ' ' && p[2] == 'Z');
}

/*
** Is the writer of ".tmp-<pid>-..." or ".del-<pid>-..." gone, so that its
** file is stale? Our own pid counts as gone: no write is in flight while
** purge runs. 'st' is the file's lstat.
*/
static int writer_gone(const char *name, const struct stat *st) {
  char *end;
  long pid = strtol(name + 5, &end, 10);
  if (pid <= 0 || *end != '-') return 1;
  if (pid == (long)getpid()) return 1;
  if ((double)st->st_mtim.tv_sec + STALE_AGE < pm_wall_time()) return 1;
  return !pid_alive(pid);
}

/* A stale temp file: a write that never reached its rename. */
static int purge_temp(store_t *s, const char *name) {
  struct stat st;
  if (fstatat(s->dirfd, name, &st, AT_SYMLINK_NOFOLLOW) != 0 ||
      S_ISDIR(st.st_mode) || !writer_gone(name, &st))
    return 0;
  return unlinkat(s->dirfd, name, 0) == 0;
}

/*
** An entry moved aside by an entry_unlink_if that was killed halfway:
** put it back unless a newer entry took its place (get ignores it if it
** was the expired one), then drop it.
*/
static void purge_aside(store_t *s, const char *name) {
  struct stat st;
  const char *entry = strchr(name + 5, '-');
  if (fstatat(s->dirfd, name, &st, AT_SYMLINK_NOFOLLOW) != 0 ||
      S_ISDIR(st.st_mode) || !writer_gone(name, &st))
    return;
  if (entry && is_entry_name(entry + 1, strlen(entry + 1)))
    linkat(s->dirfd, name, s->dirfd, entry + 1, 0);
  unlinkat(s->dirfd, name, 0);
}

/* A lock file left by a process that died holding it (nobody holds it). */
static void purge_lock(store_t *s, const char *name) {
  struct stat a, b;
  int fd = openat(s->dirfd, name, O_RDWR | O_NOFOLLOW | O_NONBLOCK |
                  O_CLOEXEC);
  if (fd < 0) {
    if (errno == ELOOP) unlinkat(s->dirfd, name, 0);
    return;
  }
  if (flock(fd, LOCK_EX | LOCK_NB) == 0 && fstat(fd, &a) == 0 &&
      fstatat(s->dirfd, name, &b, AT_SYMLINK_NOFOLLOW) == 0 &&
      a.st_ino == b.st_ino && a.st_dev == b.st_dev)
    unlinkat(s->dirfd, name, 0);
  close(fd);
}

/* An entry file that is corrupt, expired, or no regular file goes. */
static int purge_entry(lua_State *L, store_t *s, const char *name,
                       double now) {
  struct stat st;
  int r = entry_load(L, s, name, &st);
  if (r == LOAD_ERR) return 0;
  if (r == LOAD_MISS) {
    if (fstatat(s->dirfd, name, &st, AT_SYMLINK_NOFOLLOW) != 0 ||
        S_ISDIR(st.st_mode))
      return 0;
  } else if (r == LOAD_OK && record_open(L, NULL, 0, name) == 0 &&
             !is_expired(L, -1, now)) {
    return 0;
  }
  return entry_unlink_if(s, name, &st);
}

/* A directory lock that is no regular file (a planted symlink) would make
** every set fail: it goes. */
static void purge_dirlock(store_t *s) {
  struct stat st;
  if (fstatat(s->dirfd, ".lock", &st, AT_SYMLINK_NOFOLLOW) == 0 &&
      !S_ISREG(st.st_mode) && !S_ISDIR(st.st_mode))
    unlinkat(s->dirfd, ".lock", 0);
}

static int purge_one(lua_State *L, store_t *s, const char *name, double now) {
  if (is_entry_name(name, strlen(name))) return purge_entry(L, s, name, now);
  if (strncmp(name, ".tmp-", 5) == 0) return purge_temp(s, name);
  if (strncmp(name, ".del-", 5) == 0) purge_aside(s, name);
  if (strncmp(name, ".lock-", 6) == 0) purge_lock(s, name);
  if (strcmp(name, ".lock") == 0) purge_dirlock(s);
  return 0;
}

/*
** st:purge() -> number removed | nil, msg, code. Removes expired and bad
** entries and stale temp files (counted), and stale lock files.
*/
static int store_purge(lua_State *L) {
  store_t *s = check_store(L);
  double now = pm_wall_time();
  lua_Integer removed = 0;
  lua_settop(L, 1);
  if (dir_names(L, s, 1) != 0) return pm_fail(L, pm_errno(), "cache purge");
  for (lua_Integer i = 1; lua_rawgeti(L, 2, i) == LUA_TSTRING; i++) {
    removed += purge_one(L, s, lua_tostring(L, 3), now);
    lua_settop(L, 2);
  }
  lua_pushinteger(L, removed);
  return 1;
}

/* }=== */

/* {=== locks ===} */

/*
** Tries to take the flock on the lock file 'name', creating it: returns its
** descriptor, or -1 with errno (EWOULDBLOCK: another holder). A holder
** unlinks the file before it lets go, so a lock won on an unlinked (or
** replaced) file does not count: then it tries the current file.
*/
static int lock_try(store_t *s, const char *name) {
  struct stat a, b;
  for (;;) {
    int err, fd = openat(s->dirfd, name, O_RDWR | O_CREAT | O_NOFOLLOW |
                         O_CLOEXEC, 0600);
    if (fd < 0) return -1;
    if (flock(fd, LOCK_EX | LOCK_NB) != 0) {
      err = errno;
      close(fd);
      errno = err;
      return -1;
    }
    if (fstat(fd, &a) == 0 &&
        fstatat(s->dirfd, name, &b, AT_SYMLINK_NOFOLLOW) == 0 &&
        a.st_ino == b.st_ino && a.st_dev == b.st_dev)
      return fd;
    close(fd);
  }
}

/*
** Waits until the lock is ours: polls with sleeps growing from 1 to 32 ms
** rather than blocking in flock, which no signal could end without a race
** (a signal just before the call is missed). Gives up with EINTR once the
** host was asked to stop (procmon_interrupt).
*/
static int lock_wait(store_t *s, const char *name) {
  struct timespec pause = {0, 1000000};
  for (;;) {
    int fd;
    if (pm_interrupted()) {
      errno = EINTR;
      return -1;
    }
    fd = lock_try(s, name);
    if (fd >= 0 || (errno != EWOULDBLOCK && errno != EINTR)) return fd;
    nanosleep(&pause, NULL);
    if (pause.tv_nsec < 32000000) pause.tv_nsec *= 2;
  }
}

/*
** st:lock(key [, nowait]) -> Lock | nil, msg, code. Waits until the lock
** is ours (the whole process blocks; fails with EINTR when the host is
** asked to stop); with 'nowait', returns false at once when it is taken.
*/
static int store_lock(lua_State *L) {
  store_t *s = check_store(L);
  size_t klen;
  const char *key = luaL_checklstring(L, 2, &klen);
  int nowait = lua_toboolean(L, 3);
  char name[NAME_BUF];
  lock_t *k = lua_newuserdatauv(L, sizeof *k, 1);
  k->fd = -1;
  k->store = s;
  luaL_setmetatable(L, PM_LOCK_MT);
  lua_pushvalue(L, 1);
  lua_setiuservalue(L, -2, 1);  /* the store outlives its locks */
  key_to_name(key, klen, name);
  snprintf(k->name, sizeof k->name, ".lock-%s", name);
  if (nowait && pm_interrupted()) errno = EINTR;
  else k->fd = nowait ? lock_try(s, k->name) : lock_wait(s, k->name);
  if (k->fd >= 0) return 1;
  if (nowait && errno == EWOULDBLOCK) return lua_pushboolean(L, 0), 1;
  if (errno == EINTR)
    return pm_fail(L, UV_EINTR, "cache lock '%s': interrupted", name);
  return pm_fail(L, pm_errno(), "cache lock '%s'", name);
}

/* lock:unlock(), also __gc and __close: idempotent. */
static int lock_release(lua_State *L) {
  lock_t *k = luaL_checkudata(L, 1, PM_LOCK_MT);
  if (k->fd >= 0) {
    if (k->store->dirfd >= 0) unlinkat(k->store->dirfd, k->name, 0);
    close(k->fd);
    k->fd = -1;
  }
  return 0;
}

/* }=== */

/* {=== module ===} */

/* store.now() -> wall-clock time in epoch seconds, as expires_at uses */
static int store_now(lua_State *L) {
  lua_pushnumber(L, pm_wall_time());
  return 1;
}

int pm_open_store(lua_State *L) {
  static const luaL_Reg store_m[] = {
    {"get", store_get}, {"set", store_set}, {"delete", store_delete},
    {"keys", store_keys}, {"purge", store_purge}, {"lock", store_lock},
    {"name", store_name}, {"ident", store_ident}, {"close", store_close},
    {"__gc", store_close},
    {"__close", store_close}, {NULL, NULL}
  };
  static const luaL_Reg lock_m[] = {
    {"unlock", lock_release}, {"__gc", lock_release},
    {"__close", lock_release}, {NULL, NULL}
  };
  static const luaL_Reg dirbox_m[] = {{"__gc", dirbox_gc}, {NULL, NULL}};
  static const luaL_Reg funcs[] = {
    {"open", store_open}, {"now", store_now}, {NULL, NULL}
  };
  pm_new_class(L, PM_STORE_MT, store_m);
  pm_new_class(L, PM_LOCK_MT, lock_m);
  pm_new_class(L, PM_DIRBOX_MT, dirbox_m);
  luaL_newlib(L, funcs);
  return 1;
}

/* }=== */
