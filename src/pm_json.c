/*
** procmon.json: the project's one JSON codec, used by the cache store
** (src/pm_store.c) and offered to scripts as require "procmon.json".
**
** Why our own: Debian's lua-cjson 2.1.0 keeps 14 significant digits and
** decodes every number as a float (3 -> 3.0, 2^53 + 1 altered). Here
** integers stay integers (64 bits), floats round-trip exactly, null is the
** light userdata NULL (cjson.null) and an empty array keeps array_mt, so
** that [] is written back as [].
**
** Strings are bytes: the encoder escapes '"', '\' and the bytes below 0x20
** and copies every other byte as it is; the decoder passes bytes that are
** not valid UTF-8 through unchanged, so binary strings round-trip. \u
** escapes decode to UTF-8; a valid surrogate pair to one code point, a lone
** or reversed surrogate to U+FFFD.
*/
#include <locale.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "pm_json.h"

/* {=== encoder ===} */

/* The registry key of the output buffer kept for the next encoding. */
static const char enc_keep_key = 'e';

void pm_jenc_init(lua_State *L, pm_jenc_t *e, size_t cap) {
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

void pm_jenc_keep(pm_jenc_t *e) {
  if (e->cap > 65536) return;
  lua_pushvalue(e->L, e->slot);
  lua_rawsetp(e->L, LUA_REGISTRYINDEX, &enc_keep_key);
}

static char *enc_reserve(pm_jenc_t *e, size_t n) {
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

void pm_jenc_add(pm_jenc_t *e, const char *s, size_t n) {
  memcpy(enc_reserve(e, n), s, n);
  e->len += n;
}

static int enc_fail(pm_jenc_t *e, const char *what) {
  if (e->plen)
    snprintf(e->err, sizeof e->err, "%s (at value%s)", what, e->path);
  else
    snprintf(e->err, sizeof e->err, "%s", what);
  return -1;
}

/* Appends a path step ("[3]", ".name"); the caller restores e->plen. */
static void enc_step(pm_jenc_t *e, const char *fmt, const void *arg,
                     size_t n) {
  char step[40];
  if (n == 0)
    snprintf(step, sizeof step, fmt, *(const lua_Integer *)arg);
  else
    snprintf(step, sizeof step, fmt, (int)(n > 24 ? 24 : n),
             (const char *)arg);
  if (e->plen + strlen(step) < sizeof e->path) {
    strcpy(e->path + e->plen, step);
    e->plen += strlen(step);
  }
}

static void enc_unstep(pm_jenc_t *e, size_t mark) {
  e->plen = mark;
  e->path[mark] = '\0';
}

size_t pm_json_fixed(char *buf, long long m, int k) {
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
** The fast path of pm_json_double, without printf: a value with at most 6
** decimals (times, money, most configuration), checked by reading it back.
** Returns 0 when it does not apply.
*/
static size_t fmt_short(char *buf, double d) {
  double scale = 1;
  if (d == 0) return 0;  /* -0.0 keeps its sign on the slow path */
  for (int k = 0; k <= 6; k++, scale *= 10) {
    double m = d * scale;
    if (m > -1e15 && m < 1e15 && m == (double)(long long)m) {
      size_t n = pm_json_fixed(buf, (long long)m, k);
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
size_t pm_json_double(char *buf, double d, int keep_float) {
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

static int enc_number(pm_jenc_t *e, int idx) {
  char buf[48];
  size_t n;
  if (lua_isinteger(e->L, idx)) {
    n = (size_t)snprintf(buf, sizeof buf, LUA_INTEGER_FMT,
                         (LUAI_UACINT)lua_tointeger(e->L, idx));
  } else {
    double d = (double)lua_tonumber(e->L, idx);
    if (!isfinite(d)) return enc_fail(e, "cannot encode NaN or infinity");
    n = pm_json_double(buf, d, 1);
  }
  pm_jenc_add(e, buf, n);
  return 0;
}

void pm_jenc_string(pm_jenc_t *e, const char *s, size_t n) {
  static const char hex[] = "0123456789abcdef";
  size_t run = 0;
  pm_jenc_lit(e, "\"");
  for (size_t i = 0; i < n; i++) {
    unsigned char c = (unsigned char)s[i];
    char esc[6] = {'\\', 0, '0', '0', hex[c >> 4], hex[c & 15]};
    if (c >= 0x20 && c != '"' && c != '\\') continue;
    pm_jenc_add(e, s + run, i - run);
    run = i + 1;
    esc[1] = c == '"' || c == '\\' ? (char)c : c == '\n' ? 'n'
           : c == '\t' ? 't' : c == '\r' ? 'r' : c == '\b' ? 'b'
           : c == '\f' ? 'f' : 'u';
    pm_jenc_add(e, esc, esc[1] == 'u' ? 6 : 2);
  }
  pm_jenc_add(e, s + run, n - run);
  pm_jenc_lit(e, "\"");
}

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

static int enc_array(pm_jenc_t *e, int t, lua_Integer n) {
  size_t mark = e->plen;
  pm_jenc_lit(e, "[");
  for (lua_Integer i = 1; i <= n; i++) {
    if (i > 1) pm_jenc_lit(e, ",");
    lua_rawgeti(e->L, t, i);
    enc_step(e, "[" LUA_INTEGER_FMT "]", &i, 0);
    if (pm_jenc_value(e, lua_gettop(e->L))) return -1;
    lua_pop(e->L, 1);
    enc_unstep(e, mark);
  }
  pm_jenc_lit(e, "]");
  return 0;
}

/* An object key: a string, or a number written as a string. */
static int enc_key(pm_jenc_t *e, int k) {
  char buf[48];
  size_t n;
  const char *s;
  if (lua_type(e->L, k) == LUA_TSTRING) {
    s = lua_tolstring(e->L, k, &n);
    enc_step(e, ".%.*s", s, n ? n : 1);
    pm_jenc_string(e, s, n);
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
    n = pm_json_double(buf, (double)lua_tonumber(e->L, k), 0);
  enc_step(e, "[%.*s]", buf, n);
  pm_jenc_string(e, buf, n);
  return 0;
}

static int enc_object(pm_jenc_t *e, int t) {
  size_t mark = e->plen;
  int first = 1;
  pm_jenc_lit(e, "{");
  lua_pushnil(e->L);
  while (lua_next(e->L, t)) {
    if (!first) pm_jenc_lit(e, ",");
    first = 0;
    if (enc_key(e, lua_gettop(e->L) - 1)) return -1;
    pm_jenc_lit(e, ":");
    if (pm_jenc_value(e, lua_gettop(e->L))) return -1;
    lua_pop(e->L, 1);
    enc_unstep(e, mark);
  }
  pm_jenc_lit(e, "}");
  return 0;
}

/*
** A sequence is an array, anything else an object; an empty table is {}
** unless it has array_mt. A table met again inside itself is a cycle.
*/
static int enc_table(pm_jenc_t *e, int t) {
  lua_Integer n;
  int r;
  if (e->depth >= PM_JSON_MAX_DEPTH)
    return enc_fail(e, "cannot encode a value nested more than 128 deep");
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

int pm_jenc_value(pm_jenc_t *e, int idx) {
  char buf[64];
  size_t n;
  const char *s;
  switch (lua_type(e->L, idx)) {
    case LUA_TNIL: pm_jenc_lit(e, "null"); return 0;
    case LUA_TBOOLEAN:
      if (lua_toboolean(e->L, idx)) pm_jenc_lit(e, "true");
      else pm_jenc_lit(e, "false");
      return 0;
    case LUA_TNUMBER: return enc_number(e, idx);
    case LUA_TSTRING:
      s = lua_tolstring(e->L, idx, &n);
      pm_jenc_string(e, s, n);
      return 0;
    case LUA_TTABLE: return enc_table(e, idx);
    case LUA_TLIGHTUSERDATA:
      if (lua_touserdata(e->L, idx) == NULL) {  /* null (cjson.null) */
        pm_jenc_lit(e, "null");
        return 0;
      }
      /* FALLTHROUGH */
    default:
      snprintf(buf, sizeof buf, "cannot encode a %s value",
               luaL_typename(e->L, idx));
      return enc_fail(e, buf);
  }
}

/* }=== */

/* {=== decoder ===} */

/*
** Strict RFC 8259 for one value. Every failure records where it happened:
** at the end of the input it is "incomplete" (more bytes could complete
** the value), anywhere else "invalid". Numbers go through
** lua_stringtonumber once their syntax is checked, so integers stay
** integers (beyond 64 bits they become floats, as in Lua's own reader).
*/
typedef struct dec {
  lua_State *L;
  const char *s, *p, *end;   /* s: start of the whole input, for offsets */
  int depth, maxdepth;
  pm_jerr_t *err;
} dec_t;

static int dec_value(dec_t *d);

static int dec_fail(dec_t *d, const char *at, const char *what) {
  d->err->at = (size_t)(at - d->s);
  d->err->incomplete = at >= d->end;
  d->err->what = what;
  return -1;
}

static void dec_ws(dec_t *d) {
  while (d->p < d->end &&
         (*d->p == ' ' || *d->p == '\n' || *d->p == '\r' || *d->p == '\t'))
    d->p++;
}

/* true, false or null: the bytes present must all match. */
static int dec_literal(dec_t *d, const char *lit, size_t n) {
  for (size_t i = 0; i < n; i++)
    if (d->p + i >= d->end || d->p[i] != lit[i])
      return dec_fail(d, d->p + i, NULL);
  d->p += n;
  return 0;
}

static int is_digit(char c) { return c >= '0' && c <= '9'; }

/* One or more digits. */
static int dec_digits(dec_t *d) {
  if (d->p >= d->end || !is_digit(*d->p))
    return dec_fail(d, d->p, "digit expected");
  while (d->p < d->end && is_digit(*d->p)) d->p++;
  return 0;
}

/* Checks -?(0|[1-9][0-9]*)(\.[0-9]+)?([eE][+-]?[0-9]+)? at d->p. */
static int dec_numeral(dec_t *d) {
  if (*d->p == '-') d->p++;
  if (d->p < d->end && *d->p == '0') {
    if (++d->p < d->end && is_digit(*d->p))
      return dec_fail(d, d->p, "leading zero");
  } else if (d->p >= d->end || !is_digit(*d->p)) {
    return dec_fail(d, d->p, NULL);
  } else {
    dec_digits(d);
  }
  if (d->p < d->end && *d->p == '.' && (d->p++, dec_digits(d))) return -1;
  if (d->p < d->end && (*d->p == 'e' || *d->p == 'E')) {
    d->p++;
    if (d->p < d->end && (*d->p == '+' || *d->p == '-')) d->p++;
    if (dec_digits(d)) return -1;
  }
  return 0;
}

/* A numeral past the range of doubles (1e400) reads as infinity, which
** encode refuses: it is refused here too, so what decodes also encodes. */
static int dec_finite(dec_t *d, const char *start) {
  if (lua_isinteger(d->L, -1) || isfinite(lua_tonumber(d->L, -1))) return 0;
  lua_pop(d->L, 1);
  return dec_fail(d, start, "number out of range");
}

static int dec_number(dec_t *d) {
  const char *start = d->p;
  char buf[64];
  size_t n;
  if (dec_numeral(d)) return -1;
  n = (size_t)(d->p - start);
  if (n < sizeof buf) {
    memcpy(buf, start, n);
    buf[n] = '\0';
    if (lua_stringtonumber(d->L, buf)) return dec_finite(d, start);
  } else {  /* a long numeral: rare, still valid */
    lua_pushlstring(d->L, start, n);
    n = lua_stringtonumber(d->L, lua_tostring(d->L, -1));
    lua_remove(d->L, n ? -2 : -1);
    if (n) return dec_finite(d, start);
  }
  return dec_fail(d, start, "numeral too long");  /* Lua's limit: 200 */
}

static int hex_digit(char c) {
  if (c >= '0' && c <= '9') return c - '0';
  if (c >= 'a' && c <= 'f') return c - 'a' + 10;
  if (c >= 'A' && c <= 'F') return c - 'A' + 10;
  return -1;
}

/* The 4 hex digits at p, which dec_scan checked. */
static unsigned hex4(const char *p) {
  unsigned cp = 0;
  for (int i = 0; i < 4; i++) cp = cp * 16 + (unsigned)hex_digit(p[i]);
  return cp;
}

/* Checks the escape at d->p (just after a backslash) and skips it. */
static int dec_check_escape(dec_t *d) {
  if (d->p >= d->end) return dec_fail(d, d->p, NULL);
  if (*d->p == 'u') {
    for (int i = 0; i < 4; i++)
      if (++d->p >= d->end || hex_digit(*d->p) < 0)
        return dec_fail(d, d->p, "4 hex digits expected after \\u");
  } else if (*d->p == '\0' || strchr("\"\\/bfnrt", *d->p) == NULL) {
    return dec_fail(d, d->p, "invalid escape");
  }
  d->p++;
  return 0;
}

/*
** Moves d->p from after an opening quote to the closing one, checking the
** escapes on the way; *escaped tells whether there were any.
*/
static int dec_scan(dec_t *d, int *escaped) {
  const char *q = d->p, *end = d->end;
  *escaped = 0;
  for (;;) {
    while (q < end && (unsigned char)*q >= 0x20 && *q != '"' && *q != '\\')
      q++;
    if (q >= end) return dec_fail(d, q, NULL);
    if (*q == '"') break;
    if (*q != '\\') return dec_fail(d, q, "control character in string");
    *escaped = 1;
    d->p = q + 1;
    if (dec_check_escape(d)) return -1;
    q = d->p;
  }
  d->p = q;
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

/*
** The checked \uXXXX escape at p (on the 'u'), joined with a following
** low surrogate escape; a surrogate without its partner is U+FFFD. Returns
** the position after it. The output is never longer than the input.
*/
static const char *dec_unicode(const char *p, char *o, size_t *n) {
  unsigned cp = hex4(p + 1), lo;
  p += 5;
  if (cp >= 0xd800 && cp < 0xdc00 && p[0] == '\\' && p[1] == 'u' &&
      (lo = hex4(p + 2)) >= 0xdc00 && lo < 0xe000) {
    cp = 0x10000 + ((cp - 0xd800) << 10) + (lo - 0xdc00);
    p += 6;
  } else if (cp >= 0xd800 && cp < 0xe000) {
    cp = 0xfffd;
  }
  *n += utf8_put(o + *n, cp);
  return p;
}

/* Unescapes the checked s[0..len) (no quotes) into 'o' (len bytes). */
static size_t dec_unescape(const char *s, size_t len, char *o) {
  static const char from[] = "\"\\/bfnrt", to[] = "\"\\/\b\f\n\r\t";
  const char *p = s, *end = s + len;
  size_t n = 0;
  while (p < end) {
    if (*p != '\\') {
      o[n++] = *p++;
    } else if (*++p == 'u') {
      p = dec_unicode(p, o, &n);
    } else {
      o[n++] = to[strchr(from, *p) - from];
      p++;
    }
  }
  return n;
}

static int dec_string(dec_t *d) {
  const char *s = ++d->p;
  char small[256] = "", *o = small;
  size_t len;
  int escaped;
  if (dec_scan(d, &escaped)) return -1;
  len = (size_t)(d->p++ - s);
  if (!escaped) {
    lua_pushlstring(d->L, s, len);
    return 0;
  }
  if (len > sizeof small) o = pm_scratch(d->L, len);
  len = dec_unescape(s, len, o);
  lua_pushlstring(d->L, o, len);
  if (o != small) lua_remove(d->L, -2);
  return 0;
}

/* Opens an array or object; room for 4 members saves most rehashes. */
static int dec_enter(dec_t *d, int array) {
  if (++d->depth > d->maxdepth)
    return dec_fail(d, d->p, d->maxdepth > PM_JSON_MAX_DEPTH
                    ? "nested too deep" : "nested more than 128 deep");
  if (!lua_checkstack(d->L, 4)) return dec_fail(d, d->p, "out of stack");
  d->p++;
  lua_createtable(d->L, array ? 4 : 0, array ? 0 : 4);
  dec_ws(d);
  return 0;
}

/* After a member: 1 at the closing bracket, 0 after a comma, -1 else. */
static int dec_next(dec_t *d, char close) {
  dec_ws(d);
  if (d->p >= d->end) return dec_fail(d, d->p, NULL);
  if (*d->p == close) {
    d->p++;
    d->depth--;
    return 1;
  }
  if (*d->p != ',') return dec_fail(d, d->p, NULL);
  d->p++;
  dec_ws(d);
  return 0;
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

static int dec_member(dec_t *d) {
  if (d->p >= d->end || *d->p != '"') return dec_fail(d, d->p, NULL);
  if (dec_string(d)) return -1;
  dec_ws(d);
  if (d->p >= d->end || *d->p != ':') return dec_fail(d, d->p, NULL);
  d->p++;
  if (dec_value(d)) return -1;
  lua_rawset(d->L, -3);
  return 0;
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
    if (dec_member(d)) return -1;
  } while ((r = dec_next(d, '}')) == 0);
  return r > 0 ? 0 : -1;
}

static int dec_value(dec_t *d) {
  dec_ws(d);
  if (d->p >= d->end) return dec_fail(d, d->p, NULL);
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

size_t pm_json_decode(lua_State *L, const char *s, size_t n, size_t init,
                      int maxdepth, pm_jerr_t *err) {
  int top = lua_gettop(L);
  dec_t d = {L, s, s + init, s + n, 0, maxdepth, err};
  if (dec_value(&d) == 0) {
    dec_ws(&d);
    return (size_t)(d.p - s);
  }
  lua_settop(L, top);
  return (size_t)-1;
}

/* }=== */

/* {=== module ===} */

/* The raise of a misused json function, at the caller's line. */
static int json_argerror(lua_State *L, int arg, const char *fname,
                         const char *msg) {
  return luaL_error(L, "bad argument #%d to '%s' (%s)", arg, fname, msg);
}

/* json.encode(value) -> string; raises on a value JSON cannot hold. */
static int json_encode(lua_State *L) {
  pm_jenc_t e;
  if (lua_isnone(L, 1)) return json_argerror(L, 1, "encode", "value expected");
  pm_jenc_init(L, &e, 256);
  if (pm_jenc_value(&e, 1) != 0) return json_argerror(L, 1, "encode", e.err);
  lua_pushlstring(L, e.p, e.len);
  pm_jenc_keep(&e);
  return 1;
}

/* The start offset of json.decode(s, init): init as string.find takes it. */
static size_t decode_init(lua_State *L, size_t len) {
  lua_Integer init;
  int isnum;
  if (lua_isnoneornil(L, 2)) return 0;
  init = lua_tointegerx(L, 2, &isnum);
  if (!isnum)
    json_argerror(L, 2, "decode", lua_type(L, 2) == LUA_TNUMBER
                  ? "number has no integer representation"
                  : lua_pushfstring(L, "number expected, got %s",
                                    luaL_typename(L, 2)));
  if (init < 0) init = (lua_Integer)len + init + 1 > 0
                       ? (lua_Integer)len + init + 1 : 1;
  if (init == 0) init = 1;
  if ((lua_Unsigned)init > (lua_Unsigned)len + 1)
    json_argerror(L, 2, "decode", "initial position out of range");
  return (size_t)init - 1;
}

/* Pushes the message of a failed decoding, the byte counted from 1. */
static void push_decode_error(lua_State *L, const char *s, pm_jerr_t *err) {
  char what[48];
  unsigned char c = (unsigned char)s[err->at];
  if (err->incomplete) {
    lua_pushfstring(L, "incomplete JSON at byte %I: unexpected end of input",
                    (lua_Integer)err->at + 1);
    return;
  }
  if (err->what == NULL) {
    if (c >= 0x21 && c < 0x7f)
      snprintf(what, sizeof what, "unexpected '%c'", c);
    else
      snprintf(what, sizeof what, "unexpected byte 0x%02x", c);
  }
  lua_pushfstring(L, "invalid JSON at byte %I: %s", (lua_Integer)err->at + 1,
                  err->what ? err->what : what);
}

/*
** json.decode(s [, init]) -> value, next | nil, msg, code. 'next' is the
** position after the value and the whitespace after it: #s + 1 when the
** value ended the text. code: "EINCOMPLETE" (more bytes could complete
** the value) or "EINVAL" (no bytes can).
*/
static int json_decode(lua_State *L) {
  size_t len, init, next;
  const char *s;
  pm_jerr_t err;
  if (lua_type(L, 1) != LUA_TSTRING)
    return json_argerror(L, 1, "decode", lua_pushfstring(L,
                         "string expected, got %s", luaL_typename(L, 1)));
  s = lua_tolstring(L, 1, &len);
  init = decode_init(L, len);
  lua_settop(L, 1);
  next = pm_json_decode(L, s, len, init, PM_JSON_MAX_DEPTH, &err);
  if (next != (size_t)-1) {
    lua_pushinteger(L, (lua_Integer)next + 1);
    return 2;
  }
  luaL_pushfail(L);
  push_decode_error(L, s, &err);
  lua_pushstring(L, err.incomplete ? "EINCOMPLETE" : "EINVAL");
  return 3;
}

/* require "procmon.json": encode, decode, null, array_mt. */
int pm_open_json(lua_State *L) {
  static const luaL_Reg funcs[] = {
    {"encode", json_encode}, {"decode", json_decode}, {NULL, NULL}
  };
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

/* require "procmon.json" from a stock lua5.4, before or without
** require "procmon": Lua's all-in-one C searcher finds it in procmon.so. */
int luaopen_procmon_json(lua_State *L) {
  return pm_open_json(L);
}

/* }=== */
