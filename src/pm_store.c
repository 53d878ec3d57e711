/*
** Cache store: one JSON file per key in a private directory, the C half of
** procmon.cache (lua/procmon/cache.lua adds update/remember and the checks).
**
** - File names: a key made only of safe bytes keeps a readable name, other
**   bytes are %XX-escaped; a key whose name would pass NAME_ENC_MAX bytes is
**   named "~" + SHA-256 (hex). Names are injective, never start with '.',
**   and the record inside repeats the key, which is checked on every read.
** - Writes: a ".tmp-<pid>-<n>" file (O_CREAT|O_EXCL|O_NOFOLLOW, 0600) in
**   the same directory, write, optional fsync, rename over the entry: a
**   reader sees the old entry or the new one, never a part.
** - Reads: O_NOFOLLOW|O_NONBLOCK, fstat must say a regular file; anything
**   else (symlink, fifo, junk, wrong shape) reads as a miss.
** - Locks for update: flock on ".lock-<name>", unlinked by the holder before
**   it lets go; a waiter that wakes on an unlinked lock file retries.
** - JSON: a small codec of our own, because Debian's lua-cjson 2.1.0 keeps
**   14 significant digits and decodes every number as a float (3 -> 3.0,
**   2^53 -> 9.007199254741e+15). Here integers stay integers (64 bits) and
**   floats round-trip exactly.
*/
#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <locale.h>
#include <math.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/file.h>
#include <sys/stat.h>
#include <unistd.h>

#include "pm_internal.h"

#define PM_STORE_MT "procmon.Store"
#define PM_LOCK_MT "procmon.StoreLock"
#define PM_DIRBOX_MT "procmon.DirBox"
#define PM_ARRAY_MT_KEY "procmon.array_mt"

#define NAME_BUF 256        /* any file name in the directory fits */
#define NAME_ENC_MAX 195    /* longest escaped key before ".json" */
#define JSON_MAX_DEPTH 128  /* nesting limit of values, both ways */
#define READ_STACK 8192     /* entries this small are read on the C stack */
#define STALE_AGE 3600      /* a temp file this old is stale, pid or not */

typedef struct store {
  int dirfd;                /* -1 once closed */
  int durable;              /* fsync file and directory on every write */
} store_t;

typedef struct lock {
  int fd;                   /* -1 once released */
  store_t *store;           /* kept alive by the lock's user value */
  char name[NAME_BUF + 8];  /* ".lock-<entry name>" */
} lock_t;

/* {=== SHA-256 (FIPS 180-4), for the names of long keys ===} */

static const uint32_t sha_k[64] = {
  0x428a2f98, 0x71374491, 0xb5c0fbcf, 0xe9b5dba5, 0x3956c25b, 0x59f111f1,
  0x923f82a4, 0xab1c5ed5, 0xd807aa98, 0x12835b01, 0x243185be, 0x550c7dc3,
  0x72be5d74, 0x80deb1fe, 0x9bdc06a7, 0xc19bf174, 0xe49b69c1, 0xefbe4786,
  0x0fc19dc6, 0x240ca1cc, 0x2de92c6f, 0x4a7484aa, 0x5cb0a9dc, 0x76f988da,
  0x983e5152, 0xa831c66d, 0xb00327c8, 0xbf597fc7, 0xc6e00bf3, 0xd5a79147,
  0x06ca6351, 0x14292967, 0x27b70a85, 0x2e1b2138, 0x4d2c6dfc, 0x53380d13,
  0x650a7354, 0x766a0abb, 0x81c2c92e, 0x92722c85, 0xa2bfe8a1, 0xa81a664b,
  0xc24b8b70, 0xc76c51a3, 0xd192e819, 0xd6990624, 0xf40e3585, 0x106aa070,
  0x19a4c116, 0x1e376c08, 0x2748774c, 0x34b0bcb5, 0x391c0cb3, 0x4ed8aa4a,
  0x5b9cca4f, 0x682e6ff3, 0x748f82ee, 0x78a5636f, 0x84c87814, 0x8cc70208,
  0x90befffa, 0xa4506ceb, 0xbef9a3f7, 0xc67178f2
};

#define ROR(x, n) (((x) >> (n)) | ((x) << (32 - (n))))

static void sha_block(uint32_t h[8], const unsigned char *p) {
  uint32_t w[64], v[8], t1, t2;
  for (int i = 0; i < 16; i++)
    w[i] = (uint32_t)p[4 * i] << 24 | (uint32_t)p[4 * i + 1] << 16 |
           (uint32_t)p[4 * i + 2] << 8 | p[4 * i + 3];
  for (int i = 16; i < 64; i++)
    w[i] = w[i - 16] + w[i - 7] +
           (ROR(w[i - 15], 7) ^ ROR(w[i - 15], 18) ^ (w[i - 15] >> 3)) +
           (ROR(w[i - 2], 17) ^ ROR(w[i - 2], 19) ^ (w[i - 2] >> 10));
  memcpy(v, h, sizeof v);
  for (int i = 0; i < 64; i++) {
    t1 = v[7] + (ROR(v[4], 6) ^ ROR(v[4], 11) ^ ROR(v[4], 25)) +
         ((v[4] & v[5]) ^ (~v[4] & v[6])) + sha_k[i] + w[i];
    t2 = (ROR(v[0], 2) ^ ROR(v[0], 13) ^ ROR(v[0], 22)) +
         ((v[0] & v[1]) ^ (v[0] & v[2]) ^ (v[1] & v[2]));
    memmove(v + 1, v, 7 * sizeof v[0]);
    v[4] += t1;
    v[0] = t1 + t2;
  }
  for (int i = 0; i < 8; i++) h[i] += v[i];
}

/* Writes the 64 hex digits of SHA-256(data) to 'out'. */
static void sha256_hex(const char *data, size_t len, char *out) {
  uint32_t h[8] = {0x6a09e667, 0xbb67ae85, 0x3c6ef372, 0xa54ff53a,
                   0x510e527f, 0x9b05688c, 0x1f83d9ab, 0x5be0cd19};
  unsigned char tail[128] = {0};
  size_t full = len / 64 * 64, rest = len - full, n = rest < 56 ? 64 : 128;
  uint64_t bits = (uint64_t)len * 8;
  for (size_t i = 0; i < full; i += 64)
    sha_block(h, (const unsigned char *)data + i);
  memcpy(tail, data + full, rest);
  tail[rest] = 0x80;
  for (int i = 0; i < 8; i++) tail[n - 1 - i] = (unsigned char)(bits >> 8 * i);
  for (size_t i = 0; i < n; i += 64) sha_block(h, tail + i);
  for (int i = 0; i < 64; i++)
    out[i] = "0123456789abcdef"[h[i / 8] >> (28 - 4 * (i % 8)) & 15];
  out[64] = '\0';
}

/* }=== */

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
    sha256_hex(key, len, out + 1);
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

/* {=== JSON encoder ===} */

/*
** The output grows in a userdata at a fixed stack slot, so a raise (out of
** memory) leaks nothing. Encoding errors are returned, not raised, so that
** the Lua side can report them at the caller's line.
*/
typedef struct enc {
  lua_State *L;
  char *p;
  size_t len, cap;
  int slot;                    /* stack index of the buffer userdata */
  int depth;
  int anc[JSON_MAX_DEPTH];     /* stack indices of the enclosing tables */
  char path[96];               /* where the value being encoded sits */
  size_t plen;
  char err[192];
} enc_t;

/* The registry key of the output buffer kept for the next encoding. */
static const char enc_keep_key = 'e';

/* Starts with the kept buffer when it has room: no allocation per set. */
static void enc_init(lua_State *L, enc_t *e, size_t cap) {
  e->L = L;
  if (lua_rawgetp(L, LUA_REGISTRYINDEX, &enc_keep_key) == LUA_TUSERDATA &&
      lua_rawlen(L, -1) >= cap) {
    cap = lua_rawlen(L, -1);
    e->p = lua_touserdata(L, -1);
  } else {
    lua_pop(L, 1);
    e->p = lua_newuserdatauv(L, cap, 0);
  }
  e->len = 0;
  e->cap = cap;
  e->slot = lua_gettop(L);
  e->depth = 0;
  e->plen = 0;
  e->path[0] = '\0';
}

/* Keeps the buffer (if not huge) for the next encoding. */
static void enc_keep(enc_t *e) {
  if (e->cap > 65536) return;
  lua_pushvalue(e->L, e->slot);
  lua_rawsetp(e->L, LUA_REGISTRYINDEX, &enc_keep_key);
}

static char *enc_reserve(enc_t *e, size_t n) {
  if (e->cap - e->len < n) {
    size_t cap = e->cap * 2;
    char *p;
    while (cap - e->len < n) cap *= 2;
    p = lua_newuserdatauv(e->L, cap, 0);
    memcpy(p, e->p, e->len);
    lua_replace(e->L, e->slot);
    e->p = p;
    e->cap = cap;
  }
  return e->p + e->len;
}

static void enc_add(enc_t *e, const char *s, size_t n) {
  memcpy(enc_reserve(e, n), s, n);
  e->len += n;
}

#define enc_lit(e, s) enc_add((e), "" s, sizeof(s) - 1)

static int enc_fail(enc_t *e, const char *what) {
  if (e->plen)
    snprintf(e->err, sizeof e->err, "%s (at value%s)", what, e->path);
  else
    snprintf(e->err, sizeof e->err, "%s", what);
  return -1;
}

/* Appends a path step ("[3]", ".name"); the caller restores e->plen. */
static void enc_step(enc_t *e, const char *fmt, const void *arg, size_t n) {
  char step[40];
  if (n == 0)
    snprintf(step, sizeof step, fmt, *(const lua_Integer *)arg);
  else
    snprintf(step, sizeof step, fmt, (int)(n > 24 ? 24 : n), (const char *)arg);
  if (e->plen + strlen(step) < sizeof e->path) {
    strcpy(e->path + e->plen, step);
    e->plen += strlen(step);
  }
}

static void enc_unstep(enc_t *e, size_t mark) {
  e->plen = mark;
  e->path[mark] = '\0';
}

/* Writes m / 10^k in decimal ("-0.025" for -25, 3); returns the length. */
static size_t fmt_fixed(char *buf, long long m, int k) {
  char digits[24];
  size_t n = 0, len = 0;
  unsigned long long u = m < 0 ? 0ULL - (unsigned long long)m
                                : (unsigned long long)m;
  do digits[len++] = (char)('0' + u % 10); while ((u /= 10) > 0);
  while (len <= (size_t)k) digits[len++] = '0';
  if (m < 0) buf[n++] = '-';
  while (len > 0) {
    buf[n++] = digits[--len];
    if (len == (size_t)k && k > 0) buf[n++] = '.';
  }
  buf[n] = '\0';
  return n;
}

/*
** The fast path of fmt_double, without printf: a value with at most 6
** decimals (times, money, most configuration), checked by reading it back.
** Returns 0 when it does not apply.
*/
static size_t fmt_short(char *buf, double d) {
  double scale = 1;
  if (d == 0) return 0;  /* -0.0 keeps its sign on the slow path */
  for (int k = 0; k <= 6; k++, scale *= 10) {
    double m = d * scale;
    if (m > -1e15 && m < 1e15 && m == (double)(long long)m) {
      size_t n = fmt_fixed(buf, (long long)m, k);
      return strtod(buf, NULL) == d ? n : 0;
    }
  }
  return 0;
}

/*
** The shortest of %.15g, %.16g, %.17g that reads back as the same double,
** with '.' whatever the locale, and ".0" added to an integral value so that
** it stays a float when read back.
*/
static size_t fmt_double(char *buf, double d, int keep_float) {
  char point;
  size_t n = fmt_short(buf, d);
  if (n > 0) {
    if (keep_float && strchr(buf, '.') == NULL) {
      memcpy(buf + n, ".0", 3);
      n += 2;
    }
    return n;
  }
  point = localeconv()->decimal_point[0];
  for (int prec = 15; prec <= 17; prec++) {
    n = (size_t)snprintf(buf, 40, "%.*g", prec, d);
    if (strtod(buf, NULL) == d) break;
  }
  for (size_t i = 0; i < n; i++)
    if (buf[i] == point) buf[i] = '.';
  if (keep_float && strpbrk(buf, ".en") == NULL) {
    memcpy(buf + n, ".0", 3);
    n += 2;
  }
  return n;
}

static int enc_number(enc_t *e, int idx) {
  char buf[48];
  size_t n;
  if (lua_isinteger(e->L, idx)) {
    n = (size_t)snprintf(buf, sizeof buf, LUA_INTEGER_FMT,
                         (LUAI_UACINT)lua_tointeger(e->L, idx));
  } else {
    double d = (double)lua_tonumber(e->L, idx);
    if (!isfinite(d)) return enc_fail(e, "cannot encode NaN or infinity");
    n = fmt_double(buf, d, 1);
  }
  enc_add(e, buf, n);
  return 0;
}

static void enc_string(enc_t *e, const char *s, size_t n) {
  static const char hex[] = "0123456789abcdef";
  size_t run = 0;
  enc_lit(e, "\"");
  for (size_t i = 0; i < n; i++) {
    unsigned char c = (unsigned char)s[i];
    char esc[6] = {'\\', 0, '0', '0', hex[c >> 4], hex[c & 15]};
    if (c >= 0x20 && c != '"' && c != '\\') continue;
    enc_add(e, s + run, i - run);
    run = i + 1;
    esc[1] = c == '"' || c == '\\' ? (char)c : c == '\n' ? 'n' : c == '\t' ? 't'
           : c == '\r' ? 'r' : c == '\b' ? 'b' : c == '\f' ? 'f' : 'u';
    enc_add(e, esc, esc[1] == 'u' ? 6 : 2);
  }
  enc_add(e, s + run, n - run);
  enc_lit(e, "\"");
}

static int enc_value(enc_t *e, int idx);

/* Length n of a sequence t[1..n] without holes, or -1 for anything else. */
static lua_Integer seq_length(lua_State *L, int t) {
  lua_Integer count = 0, max = 0;
  lua_pushnil(L);
  while (lua_next(L, t)) {
    lua_Integer k;
    lua_pop(L, 1);
    if (!lua_isinteger(L, -1) || (k = lua_tointeger(L, -1)) < 1) {
      lua_pop(L, 1);
      return -1;
    }
    count++;
    if (k > max) max = k;
  }
  return count == max ? count : -1;
}

static int has_array_mt(lua_State *L, int t) {
  int yes;
  if (!lua_getmetatable(L, t)) return 0;
  lua_getfield(L, LUA_REGISTRYINDEX, PM_ARRAY_MT_KEY);
  yes = lua_rawequal(L, -1, -2);
  lua_pop(L, 2);
  return yes;
}

static int enc_array(enc_t *e, int t, lua_Integer n) {
  size_t mark = e->plen;
  enc_lit(e, "[");
  for (lua_Integer i = 1; i <= n; i++) {
    if (i > 1) enc_lit(e, ",");
    lua_rawgeti(e->L, t, i);
    enc_step(e, "[" LUA_INTEGER_FMT "]", &i, 0);
    if (enc_value(e, lua_gettop(e->L))) return -1;
    lua_pop(e->L, 1);
    enc_unstep(e, mark);
  }
  enc_lit(e, "]");
  return 0;
}

/* An object key: a string, or a number written as a string. */
static int enc_key(enc_t *e, int k) {
  char buf[48];
  size_t n;
  const char *s;
  if (lua_type(e->L, k) == LUA_TSTRING) {
    s = lua_tolstring(e->L, k, &n);
    enc_step(e, ".%.*s", s, n ? n : 1);
    enc_string(e, s, n);
    return 0;
  }
  if (lua_type(e->L, k) != LUA_TNUMBER) {
    snprintf(buf, sizeof buf, "cannot encode a table key of type %s",
             luaL_typename(e->L, k));
    return enc_fail(e, buf);
  }
  if (lua_isinteger(e->L, k))
    n = (size_t)snprintf(buf, sizeof buf, LUA_INTEGER_FMT,
                         (LUAI_UACINT)lua_tointeger(e->L, k));
  else
    n = fmt_double(buf, (double)lua_tonumber(e->L, k), 0);
  enc_step(e, "[%.*s]", buf, n);
  enc_string(e, buf, n);
  return 0;
}

static int enc_object(enc_t *e, int t) {
  size_t mark = e->plen;
  int first = 1;
  enc_lit(e, "{");
  lua_pushnil(e->L);
  while (lua_next(e->L, t)) {
    if (!first) enc_lit(e, ",");
    first = 0;
    if (enc_key(e, lua_gettop(e->L) - 1)) return -1;
    enc_lit(e, ":");
    if (enc_value(e, lua_gettop(e->L))) return -1;
    lua_pop(e->L, 1);
    enc_unstep(e, mark);
  }
  enc_lit(e, "}");
  return 0;
}

/*
** A sequence is an array, anything else an object; an empty table is {}
** unless it has array_mt. A table met again inside itself is a cycle.
*/
static int enc_table(enc_t *e, int t) {
  lua_Integer n;
  int r;
  if (e->depth >= JSON_MAX_DEPTH)
    return enc_fail(e, "cannot encode a value nested this deep");
  for (int i = 0; i < e->depth; i++)
    if (lua_rawequal(e->L, e->anc[i], t))
      return enc_fail(e, "cannot encode a table that contains itself");
  if (!lua_checkstack(e->L, 8))
    return enc_fail(e, "cannot encode: out of stack");
  e->anc[e->depth++] = t;
  n = seq_length(e->L, t);
  if (n > 0 || (n == 0 && has_array_mt(e->L, t)))
    r = enc_array(e, t, n);
  else
    r = enc_object(e, t);
  e->depth--;
  return r;
}

/* Encodes the value at stack index 'idx' (left in place). */
static int enc_value(enc_t *e, int idx) {
  char buf[64];
  size_t n;
  const char *s;
  switch (lua_type(e->L, idx)) {
    case LUA_TNIL: enc_lit(e, "null"); return 0;
    case LUA_TBOOLEAN:
      if (lua_toboolean(e->L, idx)) enc_lit(e, "true");
      else enc_lit(e, "false");
      return 0;
    case LUA_TNUMBER: return enc_number(e, idx);
    case LUA_TSTRING:
      s = lua_tolstring(e->L, idx, &n);
      enc_string(e, s, n);
      return 0;
    case LUA_TTABLE: return enc_table(e, idx);
    case LUA_TLIGHTUSERDATA:
      if (lua_touserdata(e->L, idx) == NULL) {  /* cjson.null */
        enc_lit(e, "null");
        return 0;
      }
      /* FALLTHROUGH */
    default:
      snprintf(buf, sizeof buf, "cannot encode a %s value",
               luaL_typename(e->L, idx));
      return enc_fail(e, buf);
  }
}

/*
** Encodes {"key":..,"expires_at":..,"value":..}\n for the value at 'v'.
** 'expires' < 0 means no expiry. Leaves the buffer on the stack; returns 0,
** or -1 with the message in e->err.
*/
static int enc_record(enc_t *e, const char *key, size_t klen, double expires,
                      int v) {
  char buf[64];
  enc_init(e->L, e, 512 + klen);
  enc_lit(e, "{\"key\":");
  enc_string(e, key, klen);
  if (expires < 0) {
    enc_lit(e, ",\"expires_at\":null,\"value\":");
  } else {  /* milliseconds are precise enough for a TTL */
    enc_lit(e, ",\"expires_at\":");
    if (expires < 1e12)
      enc_add(e, buf, fmt_fixed(buf, (long long)(expires * 1000 + 0.5), 3));
    else  /* a ttl of ages */
      enc_add(e, buf, fmt_double(buf, expires, 0));
    enc_lit(e, ",\"value\":");
  }
  if (enc_value(e, v)) return -1;
  enc_lit(e, "}\n");
  return 0;
}

/* }=== */

/* {=== JSON decoder ===} */

/*
** Strict RFC 8259, returning -1 (the stack then restored by the caller)
** on anything else. Numbers go through lua_stringtonumber, so integers stay
** integers; null is the light userdata NULL, which is cjson.null; an empty
** array gets array_mt so that it is written back as [].
*/
typedef struct dec {
  lua_State *L;
  const char *p, *end;
  int depth;
} dec_t;

static int dec_value(dec_t *d);

static void dec_ws(dec_t *d) {
  while (d->p < d->end &&
         (*d->p == ' ' || *d->p == '\n' || *d->p == '\r' || *d->p == '\t'))
    d->p++;
}

static int dec_literal(dec_t *d, const char *lit, size_t n) {
  if ((size_t)(d->end - d->p) < n || memcmp(d->p, lit, n) != 0) return -1;
  d->p += n;
  return 0;
}

static int dec_digits(dec_t *d) {
  const char *start = d->p;
  while (d->p < d->end && *d->p >= '0' && *d->p <= '9') d->p++;
  return d->p > start ? 0 : -1;
}

static int dec_number(dec_t *d) {
  const char *start = d->p;
  char buf[64];
  size_t n;
  if (d->p < d->end && *d->p == '-') d->p++;
  if (d->p < d->end && *d->p == '0') d->p++;
  else if (dec_digits(d)) return -1;
  if (d->p < d->end && *d->p == '.' && (d->p++, dec_digits(d))) return -1;
  if (d->p < d->end && (*d->p == 'e' || *d->p == 'E')) {
    d->p++;
    if (d->p < d->end && (*d->p == '+' || *d->p == '-')) d->p++;
    if (dec_digits(d)) return -1;
  }
  n = (size_t)(d->p - start);
  if (n < sizeof buf) {
    memcpy(buf, start, n);
    buf[n] = '\0';
    return lua_stringtonumber(d->L, buf) ? 0 : -1;
  }
  lua_pushlstring(d->L, start, n);  /* a long numeral: rare, still valid */
  n = lua_stringtonumber(d->L, lua_tostring(d->L, -1));
  lua_remove(d->L, n ? -2 : -1);
  return n ? 0 : -1;
}

static int dec_hex4(const char *p, unsigned *cp) {
  *cp = 0;
  for (int i = 0; i < 4; i++) {
    int v = hex_value(p[i] >= 'a' ? (char)(p[i] - 32) : p[i]);
    if (v < 0) return -1;
    *cp = *cp * 16 + (unsigned)v;
  }
  return 0;
}

static size_t utf8_put(char *o, unsigned cp) {
  if (cp < 0x80) return (size_t)(o[0] = (char)cp, 1);
  if (cp < 0x800) {
    o[0] = (char)(0xc0 | cp >> 6);
    o[1] = (char)(0x80 | (cp & 0x3f));
    return 2;
  }
  if (cp < 0x10000) {
    o[0] = (char)(0xe0 | cp >> 12);
    o[1] = (char)(0x80 | (cp >> 6 & 0x3f));
    o[2] = (char)(0x80 | (cp & 0x3f));
    return 3;
  }
  o[0] = (char)(0xf0 | cp >> 18);
  o[1] = (char)(0x80 | (cp >> 12 & 0x3f));
  o[2] = (char)(0x80 | (cp >> 6 & 0x3f));
  o[3] = (char)(0x80 | (cp & 0x3f));
  return 4;
}

/* A \uXXXX escape at p (after the backslash), with a surrogate pair. */
static int dec_unicode(const char **pp, const char *end, char *o, size_t *n) {
  const char *p = *pp;
  unsigned cp, lo;
  if (end - p < 5 || dec_hex4(p + 1, &cp)) return -1;
  p += 5;
  if (cp >= 0xd800 && cp < 0xdc00 && end - p >= 6 && p[0] == '\\' &&
      p[1] == 'u' && dec_hex4(p + 2, &lo) == 0 && lo >= 0xdc00 &&
      lo < 0xe000) {
    cp = 0x10000 + ((cp - 0xd800) << 10) + (lo - 0xdc00);
    p += 6;
  }
  *n += utf8_put(o + *n, cp);
  *pp = p;
  return 0;
}

/* Unescapes s[0..len) (no quotes) into 'o', which has room for len bytes. */
static int dec_unescape(const char *s, size_t len, char *o, size_t *n) {
  const char *p = s, *end = s + len;
  static const char from[] = "\"\\/bfnrt", to[] = "\"\\/\b\f\n\r\t";
  *n = 0;
  while (p < end) {
    const char *c;
    if (*p != '\\') {
      o[(*n)++] = *p++;
    } else if (++p < end && *p == 'u') {
      if (dec_unicode(&p, end, o, n)) return -1;
    } else if (p < end && *p && (c = strchr(from, *p)) != NULL) {
      o[(*n)++] = to[c - from];
      p++;
    } else {
      return -1;
    }
  }
  return 0;
}

/* Pushes the string s[0..len) with its escapes decoded. */
static int dec_escaped(dec_t *d, const char *s, size_t len) {
  char small[256] = "", *o = small;
  size_t n;
  if (len > sizeof small) o = pm_scratch(d->L, len);
  if (dec_unescape(s, len, o, &n)) return -1;
  lua_pushlstring(d->L, o, n);
  if (o != small) lua_remove(d->L, -2);
  return 0;
}

static int dec_string(dec_t *d) {
  const char *s = ++d->p, *q = s;
  int escaped = 0;
  for (; q < d->end && *q != '"'; q++) {
    if ((unsigned char)*q < 0x20) return -1;
    if (*q == '\\') escaped = 1, q++;
  }
  if (q >= d->end) return -1;
  d->p = q + 1;
  if (escaped) return dec_escaped(d, s, (size_t)(q - s));
  lua_pushlstring(d->L, s, (size_t)(q - s));
  return 0;
}

/* Opens an array or object; room for 4 members saves most rehashes. */
static int dec_enter(dec_t *d, int array) {
  d->p++;
  if (++d->depth > JSON_MAX_DEPTH || !lua_checkstack(d->L, 4)) return -1;
  lua_createtable(d->L, array ? 4 : 0, array ? 0 : 4);
  dec_ws(d);
  return 0;
}

/* After a member: 1 at the closing bracket, 0 after a comma, -1 else. */
static int dec_next(dec_t *d, char close) {
  dec_ws(d);
  if (d->p >= d->end) return -1;
  if (*d->p == close) {
    d->p++;
    d->depth--;
    return 1;
  }
  return *d->p++ == ',' ? (dec_ws(d), 0) : -1;
}

static int dec_array(dec_t *d) {
  lua_Integer i = 0;
  int r;
  if (dec_enter(d, 1)) return -1;
  if (d->p < d->end && *d->p == ']') {
    d->p++;
    d->depth--;
    lua_getfield(d->L, LUA_REGISTRYINDEX, PM_ARRAY_MT_KEY);
    lua_setmetatable(d->L, -2);
    return 0;
  }
  do {
    if (dec_value(d)) return -1;
    lua_rawseti(d->L, -2, ++i);
  } while ((r = dec_next(d, ']')) == 0);
  return r > 0 ? 0 : -1;
}

static int dec_object(dec_t *d) {
  int r;
  if (dec_enter(d, 0)) return -1;
  if (d->p < d->end && *d->p == '}') {
    d->p++;
    d->depth--;
    return 0;
  }
  do {
    if (d->p >= d->end || *d->p != '"' || dec_string(d)) return -1;
    dec_ws(d);
    if (d->p >= d->end || *d->p++ != ':') return -1;
    if (dec_value(d)) return -1;
    lua_rawset(d->L, -3);
  } while ((r = dec_next(d, '}')) == 0);
  return r > 0 ? 0 : -1;
}

static int dec_value(dec_t *d) {
  dec_ws(d);
  if (d->p >= d->end) return -1;
  switch (*d->p) {
    case '{': return dec_object(d);
    case '[': return dec_array(d);
    case '"': return dec_string(d);
    case 't':
      if (dec_literal(d, "true", 4)) return -1;
      lua_pushboolean(d->L, 1);
      return 0;
    case 'f':
      if (dec_literal(d, "false", 5)) return -1;
      lua_pushboolean(d->L, 0);
      return 0;
    case 'n':
      if (dec_literal(d, "null", 4)) return -1;
      lua_pushlightuserdata(d->L, NULL);
      return 0;
    default: return dec_number(d);
  }
}

/* Pushes the value of the JSON text s[0..n); or returns -1, pushing nothing. */
static int json_decode(lua_State *L, const char *s, size_t n) {
  int top = lua_gettop(L);
  dec_t d = {L, s, s + n, 0};
  if (dec_value(&d) == 0) {
    dec_ws(&d);
    if (d.p == d.end) return 0;
  }
  lua_settop(L, top);
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
** Replaces the entry 'name' with 'len' bytes at 'p', atomically: temp file,
** write, (fsync), rename, (fsync the directory). Returns 0 or -1 (errno).
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
  if (err != 0 || renameat(s->dirfd, tmp, s->dirfd, name) != 0) goto fail;
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
** Removes the entry 'name' only if it is still the file 'seen' (expired or
** corrupt), never a fresh one a writer just renamed in: the entry is moved
** aside first and put back when it turns out to be another file, unless an
** even newer one arrived meanwhile. purge() restores one left aside by a
** process killed halfway. Returns 1 when removed.
*/
static int entry_unlink_if(store_t *s, const char *name,
                           const struct stat *seen) {
  char aside[NAME_BUF * 2];
  struct stat st;
  int gone;
  if (strlen(name) > NAME_ENC_MAX + 5)  /* a foreign name: no writer races */
    return unlinkat(s->dirfd, name, 0) == 0;
  snprintf(aside, sizeof aside, ".del-%ld-%s", (long)getpid(), name);
  if (renameat(s->dirfd, name, s->dirfd, aside) != 0) return 0;
  gone = fstatat(s->dirfd, aside, &st, AT_SYMLINK_NOFOLLOW) == 0 &&
         same_file(&st, seen);
  if (!gone) linkat(s->dirfd, aside, s->dirfd, name, 0);
  unlinkat(s->dirfd, aside, 0);
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
** Opens, reads and decodes the entry file 'name' and pushes its record
** (LOAD_OK), or pushes nothing: LOAD_MISS (absent, symlink, not a regular
** file), LOAD_BAD (not JSON), LOAD_ERR (I/O error, errno set). 'st' gets
** the file's identity for entry_unlink_if.
*/
static int entry_load(lua_State *L, store_t *s, const char *name,
                      struct stat *st) {
  char stackbuf[READ_STACK], *buf;
  int top = lua_gettop(L), err = 0, r;
  ssize_t n;
  int fd = openat(s->dirfd, name, O_RDONLY | O_NOFOLLOW | O_NONBLOCK |
                  O_CLOEXEC);
  if (fd < 0)
    return errno == ENOENT || errno == ELOOP || errno == ENXIO ? LOAD_MISS
                                                                : LOAD_ERR;
  if (fstat(fd, st) != 0)
    err = errno;
  else if (!S_ISREG(st->st_mode))
    err = -1;
  if (err != 0) {
    close(fd);
    errno = err;
    return err < 0 ? LOAD_MISS : LOAD_ERR;
  }
  n = read_fd(L, fd, st, stackbuf, &buf);
  err = errno;
  close(fd);
  if (n < 0) {
    lua_settop(L, top);
    errno = err;
    return LOAD_ERR;
  }
  r = json_decode(L, buf, (size_t)n) == 0 ? LOAD_OK : LOAD_BAD;
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
  while (n > 1 && path[n - 1] == '/') n--;
  path = lua_pushlstring(L, path, n);
  s = lua_newuserdatauv(L, sizeof *s, 0);
  s->dirfd = -1;
  s->durable = durable;
  luaL_setmetatable(L, PM_STORE_MT);
  s->dirfd = pm_open_private_dir(L, path, "cache dir");
  return s->dirfd < 0 ? 3 : 1;
}

static int store_close(lua_State *L) {
  store_t *s = luaL_checkudata(L, 1, PM_STORE_MT);
  if (s->dirfd >= 0) close(s->dirfd);
  s->dirfd = -1;
  return 0;
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
** 'false, why' is a value that cannot be encoded; then nothing is written.
*/
static int store_set(lua_State *L) {
  store_t *s = check_store(L);
  size_t klen;
  const char *key = luaL_checklstring(L, 2, &klen);
  double expires = luaL_optnumber(L, 4, -1);
  char name[NAME_BUF];
  enc_t e;
  luaL_checkany(L, 3);
  e.L = L;
  if (enc_record(&e, key, klen, expires, 3) != 0) {
    lua_pushboolean(L, 0);
    lua_pushstring(L, e.err);
    return 2;
  }
  key_to_name(key, klen, name);
  if (entry_commit(s, name, e.p, e.len) != 0)
    return pm_fail(L, pm_errno(), "cache set '%s'", name);
  enc_keep(&e);
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

static int purge_one(lua_State *L, store_t *s, const char *name, double now) {
  if (is_entry_name(name, strlen(name))) return purge_entry(L, s, name, now);
  if (strncmp(name, ".tmp-", 5) == 0) return purge_temp(s, name);
  if (strncmp(name, ".del-", 5) == 0) purge_aside(s, name);
  if (strncmp(name, ".lock-", 6) == 0) purge_lock(s, name);
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
** Takes the flock on the lock file 'name', creating it. A holder unlinks
** the file before it lets go, so a waiter that wakes up holding a lock on
** an unlinked (or replaced) file retries with the current one.
*/
static int lock_acquire(store_t *s, const char *name) {
  struct stat a, b;
  for (;;) {
    int fd = openat(s->dirfd, name, O_RDWR | O_CREAT | O_NOFOLLOW |
                    O_CLOEXEC, 0600);
    if (fd < 0) return -1;
    while (flock(fd, LOCK_EX) != 0) {
      if (errno != EINTR) {
        int err = errno;
        close(fd);
        errno = err;
        return -1;
      }
    }
    if (fstat(fd, &a) == 0 &&
        fstatat(s->dirfd, name, &b, AT_SYMLINK_NOFOLLOW) == 0 &&
        a.st_ino == b.st_ino && a.st_dev == b.st_dev)
      return fd;
    close(fd);
  }
}

/* st:lock(key) -> Lock | nil, msg, code. Blocks until the lock is ours. */
static int store_lock(lua_State *L) {
  store_t *s = check_store(L);
  size_t klen;
  const char *key = luaL_checklstring(L, 2, &klen);
  char name[NAME_BUF];
  lock_t *k = lua_newuserdatauv(L, sizeof *k, 1);
  k->fd = -1;
  k->store = s;
  luaL_setmetatable(L, PM_LOCK_MT);
  lua_pushvalue(L, 1);
  lua_setiuservalue(L, -2, 1);  /* the store outlives its locks */
  key_to_name(key, klen, name);
  snprintf(k->name, sizeof k->name, ".lock-%s", name);
  k->fd = lock_acquire(s, k->name);
  if (k->fd < 0) return pm_fail(L, pm_errno(), "cache lock '%s'", name);
  return 1;
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

/* store.encode(value) -> json | false, why */
static int store_encode(lua_State *L) {
  enc_t e;
  luaL_checkany(L, 1);
  enc_init(L, &e, 256);
  if (enc_value(&e, 1) != 0) {
    lua_pushboolean(L, 0);
    lua_pushstring(L, e.err);
    return 2;
  }
  lua_pushlstring(L, e.p, e.len);
  enc_keep(&e);
  return 1;
}

/* store.decode(json) -> value | nil, "invalid JSON" */
static int store_decode(lua_State *L) {
  size_t n;
  const char *s = luaL_checklstring(L, 1, &n);
  if (json_decode(L, s, n) == 0) return 1;
  luaL_pushfail(L);
  lua_pushliteral(L, "invalid JSON");
  return 2;
}

static void new_class(lua_State *L, const char *name, const luaL_Reg *m) {
  luaL_newmetatable(L, name);
  luaL_setfuncs(L, m, 0);
  lua_pushvalue(L, -1);
  lua_setfield(L, -2, "__index");
  lua_pop(L, 1);
}

int pm_open_store(lua_State *L) {
  static const luaL_Reg store_m[] = {
    {"get", store_get}, {"set", store_set}, {"delete", store_delete},
    {"keys", store_keys}, {"purge", store_purge}, {"lock", store_lock},
    {"name", store_name}, {"close", store_close}, {"__gc", store_close},
    {"__close", store_close}, {NULL, NULL}
  };
  static const luaL_Reg lock_m[] = {
    {"unlock", lock_release}, {"__gc", lock_release},
    {"__close", lock_release}, {NULL, NULL}
  };
  static const luaL_Reg dirbox_m[] = {{"__gc", dirbox_gc}, {NULL, NULL}};
  static const luaL_Reg funcs[] = {
    {"open", store_open}, {"encode", store_encode}, {"decode", store_decode},
    {"now", store_now}, {NULL, NULL}
  };
  new_class(L, PM_STORE_MT, store_m);
  new_class(L, PM_LOCK_MT, lock_m);
  new_class(L, PM_DIRBOX_MT, dirbox_m);
  luaL_newlib(L, funcs);
  if (luaL_getsubtable(L, LUA_REGISTRYINDEX, PM_ARRAY_MT_KEY) == 0) {
    lua_pushliteral(L, "procmon.array");
    lua_setfield(L, -2, "__name");
  }
  lua_setfield(L, -2, "array_mt");
  lua_pushlightuserdata(L, NULL);
  lua_setfield(L, -2, "null");
  return 1;
}

/* }=== */
