/*
** The project's one JSON codec (src/pm_json.c), shared by the C module
** "procmon.json" and the cache store, which writes its records with the
** encoder pieces below and reads them with pm_json_decode.
*/
#ifndef PM_JSON_H
#define PM_JSON_H

#include "pm_internal.h"

#define PM_JSON_MAX_DEPTH 128           /* nesting limit of values, both ways */
#define PM_ARRAY_MT_KEY "procmon.array_mt"  /* registry: the array metatable */

/*
** An encoding in progress. The output grows in a userdata at a fixed stack
** slot, so a raise (out of memory) leaks nothing. Encoding errors are
** returned (message in 'err'), so that callers report them at their
** caller's line.
*/
typedef struct pm_jenc {
  lua_State *L;
  char *p;
  size_t len, cap;
  int slot;                       /* stack index of the buffer userdata */
  int depth;
  int anc[PM_JSON_MAX_DEPTH];     /* stack indices of the enclosing tables */
  char path[96];                  /* where the value being encoded sits */
  size_t plen;
  char err[192];
} pm_jenc_t;

/* Starts an encoding, pushing its buffer (the kept one when big enough). */
void pm_jenc_init(lua_State *L, pm_jenc_t *e, size_t cap);
/* Keeps the buffer (if not huge) for the next encoding. */
void pm_jenc_keep(pm_jenc_t *e);
void pm_jenc_add(pm_jenc_t *e, const char *s, size_t n);
#define pm_jenc_lit(e, s) pm_jenc_add((e), "" s, sizeof(s) - 1)
void pm_jenc_string(pm_jenc_t *e, const char *s, size_t n);
/* Appends the value at 'idx'; 0, or -1 with the reason in e->err. */
int pm_jenc_value(pm_jenc_t *e, int idx);
/* m / 10^k in decimal into buf; returns the length. */
size_t pm_json_fixed(char *buf, long long m, int k);
/* The shortest exact form of d (buf: 48 bytes); ".0" kept if keep_float. */
size_t pm_json_double(char *buf, double d, int keep_float);

/* Why a decoding failed: where (offset from the start of the input), and
** whether the input ended before the value did (more bytes could help). */
typedef struct pm_jerr {
  size_t at;
  int incomplete;
  const char *what;               /* NULL: an unexpected byte */
} pm_jerr_t;

/*
** Decodes the value starting at s[init] (whitespace before it skipped),
** pushes it and returns the offset after it and the whitespace after it;
** or pushes nothing, fills 'err' and returns (size_t)-1. Values may nest
** 'maxdepth' deep.
*/
size_t pm_json_decode(lua_State *L, const char *s, size_t n, size_t init,
                      int maxdepth, pm_jerr_t *err);

int pm_open_json(lua_State *L);

#endif
