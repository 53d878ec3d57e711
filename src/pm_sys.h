/*
** Private declarations of pm_sys.c shared with pm_store.c (state directory
** and private-directory checks). Not an installed header.
*/
#ifndef PM_SYS_H
#define PM_SYS_H

#include <lua.h>

/*
** Opens 'path' as a private directory (O_DIRECTORY | O_NOFOLLOW), creating
** its last component 0700 when missing, and checks that it is a directory
** owned by this user and not group/world-writable. Returns the descriptor,
** or -1 after pushing the fail triple (nil, msg, code). 'what' names the
** directory in messages ("state dir", "cache dir").
*/
int pm_open_private_dir(lua_State *L, const char *path, const char *what);

#endif
