/* System helpers: state directory checks (issue 4). */
#include "pm_internal.h"

int pm_open_sys(lua_State *L) {
  lua_newtable(L);
  return 1;
}
