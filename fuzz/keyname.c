/*
** Cache keys to file names and back (src/pm_store.c). Input: two keys,
** split at the first 0xFF byte (or one key). Every name is a safe file
** name (no '/', no leading '.', no NUL, under NAME_BUF, ends in .json);
** a readable name maps back to exactly its key; two different keys never
** share a name (hashed names: SHA-256 collisions are not looked for).
*/
#define pm_open_store fuzz_unused_pm_open_store  /* the core has it */
#include "../src/pm_store.c"

#include "fuzz.h"

static void check_name(const char *name) {
  size_t n = strlen(name);
  fuzz_assert(n > 5 && n < NAME_BUF, "name length");
  fuzz_assert(strcmp(name + n - 5, ".json") == 0, "name ends in .json");
  fuzz_assert(name[0] != '.', "name starts with a dot");
  fuzz_assert(strchr(name, '/') == NULL, "name holds a slash");
}

/* The name of 'key'; for a readable one, checks that it maps back. */
static void name_of(lua_State *L, const char *key, size_t len, char *name) {
  key_to_name(key, len, name);
  check_name(name);
  if (name[0] == '~') return;
  fuzz_assert(name_to_key(L, name, strlen(name)) == 1, "a readable name maps to no key");
  fuzz_assert(lua_rawlen(L, -1) == len && memcmp(lua_tostring(L, -1), key, len) == 0,
              "a name maps back to another key");
  lua_pop(L, 1);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
  lua_State *L = fuzz_lua("common.lua");
  const char *k1 = (const char *)data, *sep = memchr(data, 0xFF, size);
  size_t n1 = sep ? (size_t)(sep - k1) : size;
  char a[NAME_BUF], b[NAME_BUF];
  name_of(L, k1, n1, a);
  /* A name read from a directory: whatever it is, no crash, and a key
  ** it yields maps back to it. */
  if (n1 < NAME_BUF && memchr(k1, 0, n1) == NULL) {
    char dirent[NAME_BUF];
    memcpy(dirent, k1, n1);
    dirent[n1] = '\0';
    if (name_to_key(L, dirent, n1)) {
      key_to_name(lua_tostring(L, -1), lua_rawlen(L, -1), b);
      fuzz_assert(strcmp(b, dirent) == 0, "a listed name yields a key of another name");
      lua_pop(L, 1);
    }
  }
  if (sep) {
    const char *k2 = sep + 1;
    size_t n2 = size - n1 - 1;
    name_of(L, k2, n2, b);
    if (n1 != n2 || memcmp(k1, k2, n1) != 0)
      fuzz_assert(strcmp(a, b) != 0 || a[0] == '~', "two keys share a file name");
  }
  return 0;
}
