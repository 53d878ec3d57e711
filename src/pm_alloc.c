/*
** Memory: a lua_Alloc for hosts and the capture buffers. Three kinds of
** block, told apart by size alone (Lua always passes a block's true size
** as osize): small ones from a per-state pool, middle ones from malloc,
** big ones mapped with huge pages. procrun creates its state with it.
*/
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <unistd.h>

#include "pm_internal.h"

#define PM_BIG ((size_t)1 << 20)  /* blocks this big are mapped, not malloc'd */
#define POOL_MAX 128               /* blocks this small come from the pool */
#define POOL_CLASSES (POOL_MAX / 16)
#define SLAB_SIZE (64 * 1024)

/* Free lists per 16-byte size class, carved from 64 KiB slabs. Lua makes
** and drops short strings by the million (a line callback); glibc's free
** then takes its slow path, a free list does not. */
typedef struct pool {
  void *free[POOL_CLASSES];
  char *cur, *end;
  void *slabs;              /* each slab starts with a link to the previous */
  /* Adopting a capture's pages as a string (below). */
  size_t str_offset;        /* where a long string's bytes start in its block */
  int probing;              /* the next string block tells str_offset */
  int adopting;             /* the next string block maps adopt_fd */
  int adopt_fd;
  size_t adopt_len;
} pool_t;

enum { K_NONE, K_POOL, K_LIBC, K_BIG };

static int size_class(size_t n) { return (int)((n - 1) >> 4); }

static inline void *pool_get(pool_t *pool, size_t n) {
  int c = size_class(n);
  size_t size = (size_t)(c + 1) * 16;
  void *p = pool->free[c];
  if (p) {
    pool->free[c] = *(void **)p;
    return p;
  }
  if ((size_t)(pool->end - pool->cur) < size) {
    char *slab = (char *)malloc(SLAB_SIZE);
    if (slab == NULL) return NULL;
    *(void **)slab = pool->slabs;
    pool->slabs = slab;
    pool->cur = slab + 16;
    pool->end = slab + SLAB_SIZE;
  }
  p = pool->cur;
  pool->cur += size;
  return p;
}

static inline void pool_put(pool_t *pool, void *p, size_t n) {
  int c = size_class(n);
  *(void **)p = pool->free[c];
  pool->free[c] = p;
}

static size_t page_round(size_t n) {
  return (n + 4095) & ~(size_t)4095;
}

static void *big_map(size_t n) {
  void *p = mmap(NULL, page_round(n), PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
  if (p == MAP_FAILED) return NULL;
  /* 2 MiB pages: one fault per 2 MiB instead of 512, which is most of the
  ** cost of filling a fresh 256 MiB capture or string in a VM. */
  madvise(p, page_round(n), MADV_HUGEPAGE);
  return p;
}

static void *big_remap(void *ptr, size_t osize, size_t nsize) {
  void *p = mremap(ptr, page_round(osize), page_round(nsize), MREMAP_MAYMOVE);
  if (p == MAP_FAILED) return NULL;
  madvise(p, page_round(nsize), MADV_HUGEPAGE);
  return p;
}

static int kind(pool_t *pool, size_t n) {
  if (n == 0) return K_NONE;
  if (pool && n <= POOL_MAX) return K_POOL;
  return n < PM_BIG ? K_LIBC : K_BIG;
}

static void *raw_alloc(pool_t *pool, int k, size_t n) {
  if (k == K_POOL) return pool_get(pool, n);
  return k == K_BIG ? big_map(n) : malloc(n);
}

static void raw_free(pool_t *pool, int k, void *p, size_t n) {
  if (k == K_POOL) pool_put(pool, p, n);
  else if (k == K_BIG) munmap(p, page_round(n));
  else free(p);
}

/* {=== captures that become strings without a second copy ===} */

/*
** A big capture (src/pm_stdio.c) can live in a memfd, its bytes at the
** offset where a long string's bytes sit in their block. Lua then makes
** the Result's string as usual, but procmon_alloc answers the string's
** block with a second mapping of the same file: Lua's memcpy writes every
** byte onto itself through another address, and the capture's memory is
** not touched a second time (on a VM, that first touch of fresh memory is
** most of what a 256 MiB capture costs; bench/NOTES.md). Only in states
** made by procmon_newstate; elsewhere the string is a copy, as before.
*/
#define PROBE_LEN 256  /* a long string whose block is not a pool block */

static const char probe_bytes[PROBE_LEN];

/* The block for the adopted string, or NULL (then an ordinary one). */
static void *adopt_block(pool_t *pool, size_t nsize) {
  size_t size = page_round(nsize);
  struct stat st;
  void *p;
  pool->adopting = 0;
  if (nsize < PM_BIG || nsize != pool->str_offset + pool->adopt_len + 1) return NULL;
  if (fstat(pool->adopt_fd, &st) != 0 ||
      ((size_t)st.st_size < size && ftruncate(pool->adopt_fd, (off_t)size) != 0))
    return NULL;
  /* MAP_POPULATE: the pages exist (the capture's); mapping them all at
  ** once spares Lua's copy a fault per page (0.79 -> 0.74 s for 256 MiB). */
  p = mmap(NULL, size, PROT_READ | PROT_WRITE, MAP_SHARED | MAP_POPULATE, pool->adopt_fd, 0);
  return p == MAP_FAILED ? NULL : p;
}

/* A new string block while a probe or an adoption waits for it. */
static void *string_block(pool_t *pool, size_t nsize) {
  if (pool->probing) {
    pool->probing = 0;
    pool->str_offset = nsize - PROBE_LEN - 1;
    return NULL;
  }
  return adopt_block(pool, nsize);
}

size_t pm_adopt_offset(lua_State *L) {
  void *ud;
  if (lua_getallocf(L, &ud) != procmon_alloc || ud == NULL) return 0;
  return ((pool_t *)ud)->str_offset;
}

void pm_push_adopted(lua_State *L, int fd, const char *s, size_t len) {
  void *ud;
  pool_t *pool;
  lua_getallocf(L, &ud);
  pool = (pool_t *)ud;
  pool->adopt_fd = fd;
  pool->adopt_len = len;
  pool->adopting = 1;
  lua_pushlstring(L, s, len);
  pool->adopting = 0;
}

/* }=== */

/* Every case but the two hot ones of procmon_alloc. */
static __attribute__((noinline)) void *alloc_other(pool_t *pool, void *ptr, size_t osize,
                                                   size_t nsize) {
  int ok, nk;
  void *p;
  if (ptr == NULL && osize == LUA_TSTRING && pool && (pool->probing || pool->adopting) &&
      (p = string_block(pool, nsize)) != NULL)
    return p;
  if (ptr == NULL) osize = 0;  /* then osize only tells the object type */
  ok = kind(pool, osize);
  nk = kind(pool, nsize);
  if (nk == K_NONE) {
    if (ok != K_NONE) raw_free(pool, ok, ptr, osize);
    return NULL;
  }
  if (ok == nk && nk == K_LIBC) return realloc(ptr, nsize);
  if (ok == nk && nk == K_BIG) return big_remap(ptr, osize, nsize);
  if (ok == nk && size_class(osize) == size_class(nsize)) return ptr;
  p = raw_alloc(pool, nk, nsize);
  if (p == NULL) {
    if (nsize < osize) abort();  /* Lua relies on shrinking never failing */
    return NULL;
  }
  if (ok != K_NONE) {
    memcpy(p, ptr, osize < nsize ? osize : nsize);
    raw_free(pool, ok, ptr, osize);
  }
  return p;
}

/* The lua_Alloc; 'ud' is the state's pool, or NULL for no pool. The hot
** cases, a new small block and a small block freed (a line callback makes
** and drops a short string per line), cost no more than a free list. */
void *procmon_alloc(void *ud, void *ptr, size_t osize, size_t nsize) {
  pool_t *pool = (pool_t *)ud;
  if (pool && ptr == NULL && nsize - 1 < POOL_MAX) return pool_get(pool, nsize);
  if (pool && nsize == 0 && ptr != NULL && osize <= POOL_MAX) {
    pool_put(pool, ptr, osize);
    return NULL;
  }
  return alloc_other(pool, ptr, osize, nsize);
}

/* {=== a state like luaL_newstate's, with the pool ===} */

static int panic(lua_State *L) {
  const char *msg = lua_tostring(L, -1);
  fprintf(stderr, "PANIC: unprotected error in call to Lua API (%s)\n",
          msg ? msg : "error object is not a string");
  return 0;
}

static void warn_on(void *ud, const char *msg, int tocont);
static void warn_off(void *ud, const char *msg, int tocont);

/* Warnings start off; "@on" and "@off" switch them, as in lua5.4. */
static int warn_control(lua_State *L, const char *msg, int tocont) {
  if (tocont || *msg != '@') return 0;
  if (strcmp(msg + 1, "off") == 0) lua_setwarnf(L, warn_off, L);
  else if (strcmp(msg + 1, "on") == 0) lua_setwarnf(L, warn_on, L);
  return 1;
}

static void warn_off(void *ud, const char *msg, int tocont) {
  warn_control((lua_State *)ud, msg, tocont);
}

static void warn_cont(void *ud, const char *msg, int tocont) {
  lua_State *L = (lua_State *)ud;
  fputs(msg, stderr);
  if (tocont) {
    lua_setwarnf(L, warn_cont, L);
  } else {
    fputs("\n", stderr);
    lua_setwarnf(L, warn_on, L);
  }
}

static void warn_on(void *ud, const char *msg, int tocont) {
  if (warn_control((lua_State *)ud, msg, tocont)) return;
  fputs("Lua warning: ", stderr);
  warn_cont(ud, msg, tocont);
}

lua_State *procmon_newstate(void) {
  pool_t *pool = (pool_t *)calloc(1, sizeof *pool);
  lua_State *L = pool ? lua_newstate(procmon_alloc, pool) : NULL;
  if (L == NULL) {
    free(pool);
    return NULL;
  }
  lua_atpanic(L, panic);
  lua_setwarnf(L, warn_off, L);
  pool->probing = 1;  /* learns pool->str_offset */
  lua_pushlstring(L, probe_bytes, PROBE_LEN);
  lua_pop(L, 1);
  if (pool->probing) pool->probing = 0, pool->str_offset = 0;  /* not seen: no adoption */
  return L;
}

void procmon_close(lua_State *L) {
  void *ud;
  pool_t *pool;
  lua_getallocf(L, &ud);
  lua_close(L);
  pool = (pool_t *)ud;
  while (pool->slabs) {
    void *next = *(void **)pool->slabs;
    free(pool->slabs);
    pool->slabs = next;
  }
  free(pool);
}
