/*
** System helpers: the state directory (where it is, creating it, refusing
** a hostile one). The checks are done on an open descriptor (fstat after
** O_NOFOLLOW), so nothing can be swapped between the check and the use.
*/
#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "pm_internal.h"

/* {=== private directories ===} */

/* Why 'st' is not acceptable as a private directory, or NULL when it is. */
static const char *dir_problem(const struct stat *st, int *uverr) {
  if (!S_ISDIR(st->st_mode)) {
    *uverr = UV_ENOTDIR;
    return "it is not a directory";
  }
  if (st->st_uid != geteuid()) {
    *uverr = UV_EPERM;
    return "it is owned by another user";
  }
  if (st->st_mode & (S_IWGRP | S_IWOTH)) {
    *uverr = UV_EPERM;
    return "it is group- or world-writable";
  }
  return NULL;
}

/*
** Opens an existing directory without following a final symlink (Linux
** says ENOTDIR, not ELOOP, for a symlink opened with O_DIRECTORY).
*/
static int open_dir_nofollow(lua_State *L, const char *path,
                             const char *what) {
  struct stat st;
  int err, fd = open(path, O_RDONLY | O_DIRECTORY | O_NOFOLLOW | O_CLOEXEC);
  if (fd >= 0) return fd;
  err = errno;
  if ((err == ELOOP || err == ENOTDIR) && lstat(path, &st) == 0 &&
      S_ISLNK(st.st_mode))
    pm_fail(L, UV_ELOOP, "refusing %s '%s': it is a symlink", what, path);
  else if (err == ENOTDIR)
    pm_fail(L, UV_ENOTDIR, "refusing %s '%s': it is not a directory", what,
            path);
  else
    pm_fail(L, uv_translate_sys_error(err), "cannot open %s '%s'", what,
            path);
  return -1;
}

int pm_open_private_dir(lua_State *L, const char *path, const char *what) {
  struct stat st;
  const char *problem;
  int fd, uverr = 0, created = mkdir(path, 0700) == 0;
  if (!created && errno != EEXIST) {
    pm_fail(L, pm_errno(), "cannot create %s '%s'", what, path);
    return -1;
  }
  fd = open_dir_nofollow(L, path, what);
  if (fd < 0) return -1;
  if (created) fchmod(fd, 0700);  /* whatever the umask took away */
  if (fstat(fd, &st) != 0) {
    uverr = pm_errno();
    close(fd);
    pm_fail(L, uverr, "cannot stat %s '%s'", what, path);
    return -1;
  }
  problem = dir_problem(&st, &uverr);
  if (problem == NULL) return fd;
  close(fd);
  pm_fail(L, uverr, "refusing %s '%s': %s", what, path, problem);
  return -1;
}

/* {=== the state directory ===} */

/* An environment variable, or NULL when unset or empty. */
static const char *env_path(const char *name) {
  const char *v = getenv(name);
  return v && *v ? v : NULL;
}

/*
** Pushes the state directory path: $PROCMON_STATE_DIR, else
** $XDG_RUNTIME_DIR/procmon, else /tmp/procmon-<uid>. Trailing slashes are
** dropped, so that O_NOFOLLOW applies to the last component.
*/
static void push_state_path(lua_State *L) {
  const char *p = env_path("PROCMON_STATE_DIR");
  size_t n;
  if (p)
    lua_pushstring(L, p);
  else if ((p = env_path("XDG_RUNTIME_DIR")) != NULL)
    lua_pushfstring(L, "%s/procmon", p);
  else
    lua_pushfstring(L, "/tmp/procmon-%d", (int)geteuid());
  p = lua_tolstring(L, -1, &n);
  while (n > 1 && p[n - 1] == '/') n--;
  lua_pushlstring(L, p, n);
  lua_remove(L, -2);
}

/* sys.state_dir() -> path | nil, msg, code. Creates it 0700 if missing. */
static int sys_state_dir(lua_State *L) {
  const char *path;
  int fd;
  push_state_path(L);
  path = lua_tostring(L, -1);
  fd = pm_open_private_dir(L, path, "state dir");
  if (fd < 0) return 3;
  close(fd);
  return 1;
}

/* sys.private_dir(path) -> path | nil, msg, code: the same checks. */
static int sys_private_dir(lua_State *L) {
  const char *path = luaL_checkstring(L, 1);
  int fd = pm_open_private_dir(L, path, "directory");
  if (fd < 0) return 3;
  close(fd);
  lua_settop(L, 1);
  return 1;
}

int pm_open_sys(lua_State *L) {
  static const luaL_Reg funcs[] = {
    {"state_dir", sys_state_dir},
    {"private_dir", sys_private_dir},
    {NULL, NULL}
  };
  luaL_newlib(L, funcs);
  return 1;
}
