#include "pm_process.h"
int pm_open_process(lua_State *L) { (void)L; return 0; }
void pm_proc_kill_all(pm_ctx_t *ctx) { (void)ctx; }
void pm_proc_orphan_all(pm_ctx_t *ctx) { (void)ctx; }
