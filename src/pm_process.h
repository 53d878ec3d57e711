/*
** Private: the child process record shared by pm_process.c (lifecycle,
** options, methods) and pm_stdio.c (pipes, capture, lines, stdin).
*/
#ifndef PM_PROCESS_H
#define PM_PROCESS_H

#include <sys/types.h>

#include "pm_internal.h"

enum { PM_IO_NONE, PM_IO_PIPE, PM_IO_NULL, PM_IO_INHERIT, PM_IO_FILE };

typedef struct pm_stream {
  uv_pipe_t pipe;
  struct pm_proc *proc;
  int fd;               /* 0, 1 or 2: the child's descriptor */
  int mode;             /* PM_IO_* */
  int child_fd;         /* descriptor handed to the child, -1 if none */
  int parent_fd;        /* our end of the pipe until the handle owns it */
  const char *path;     /* { file = path }: lives in the options table */
  int append;
  int has_data;         /* the input option: written, then stdin closed */
  int discard;          /* past max_buffer: read and drop */
  int pipe_grown;       /* F_SETPIPE_SZ done */
  size_t seen;          /* bytes read so far */
  int open;             /* the pipe handle is open */
  int done;             /* EOF seen or reading given up */
  int has_cb;           /* a Lua callback gets the data, no capture */
  int lines;            /* the callback gets whole lines */
  size_t max_line;      /* longer lines go out in pieces of this size */
  int closing_stdin;    /* shutdown requested */
  int write_error;      /* a queued write failed (EPIPE): later ones fail */
  char *buf;            /* capture buffer, or the callback read buffer */
  size_t len, cap;
  int in_file;          /* a big capture, moved into the memfd mfd, its */
  int mfd;              /* bytes at file_off (pm_stdio.c) */
  size_t file_off;
  int no_file;          /* the memfd could not grow: plain memory from then */
  char *carry;          /* partial line waiting for its newline */
  size_t carry_len, carry_cap;
} pm_stream_t;

typedef struct pm_proc_box {
  struct pm_proc *p;    /* NULL once the record is freed */
  pid_t pid;
  int closed;           /* :close()/__close/__gc ran */
} pm_proc_box_t;

struct pm_proc {
  pm_owner_t owner;     /* first field: the teardown closes our handles */
  pm_ctx_t *ctx;
  pm_proc_box_t *box;   /* the Lua object, NULL when orphaned */
  struct pm_proc *next, **prevp;
  int ref;              /* self-anchor until every handle is closed */
  int open_handles;
  pid_t pid;
  int pidfd;
  uv_poll_t exit_poll;
  uv_timer_t timeout_timer, idle_timer, kill_timer, grace_timer;
  pm_stream_t io[3];
  int detached, exited, settled, status, killing, user_signal;
  int holds_ref;        /* without pidfd: counted in ctx->sigchld_refs */
  int drain_waiting;    /* p:write waits for the stdin queue to drain */
  int kill_signal;
  double kill_grace, timeout, idle_timeout;
  size_t max_buffer;
  const char *reason;   /* set when procmon itself stops the child */
  int truncated;
  int status_lost;      /* waitpid said ECHILD: someone else took the status */
  double started_at, ended_at;
  uint64_t kill_deadline; /* loop time (ms) of the SIGKILL */
  unsigned long output_reads, grace_reads; /* reads so far; at the exit */
};

/* pm_spawn.c: the system call. Steps a failure is reported for. */
enum { PM_SPAWN_SETUP, PM_SPAWN_STDIO, PM_SPAWN_CWD, PM_SPAWN_EXEC };

typedef struct pm_spawn {
  const char *file;     /* a path: the PATH search is done already */
  char *const *argv, *const *envp;
  const char *cwd;      /* NULL: ours */
  int fds[3];           /* the child's 0, 1 and 2; -1 inherits ours */
  int detached;         /* own session and no death signal */
  int want_pidfd;
  pid_t pid;            /* out */
  int pidfd;            /* out: -1 without want_pidfd or kernel support */
  int stage;            /* out: PM_SPAWN_* of a failure */
} pm_spawn_t;

int pm_spawn(pm_spawn_t *r);
void pm_fd_limit_init(void);
int pm_fd_pressure(int fd);

/* pm_stdio.c */
int pm_stdio_parse(lua_State *L, int arg, pm_stream_t io[3], int detached);
int pm_stdio_prepare(lua_State *L, pm_stream_t io[3], const char *what);
void pm_stdio_close_child_ends(pm_stream_t io[3]);
void pm_stdio_abort(pm_stream_t io[3]);
int pm_stdio_start(struct pm_proc *p, lua_State *L, int stdin_arg);
void pm_stdio_finish(struct pm_proc *p);
void pm_stdio_push_output(lua_State *L, struct pm_proc *p, int fd);
void pm_stdio_free(struct pm_proc *p);
int pm_stdio_write(lua_State *L, struct pm_proc *p, const char *data, size_t len);
int pm_stdio_write_full(struct pm_proc *p);
int pm_stdio_close_stdin(struct pm_proc *p);

/* pm_process.c */
void pm_proc_handle_close_cb(uv_handle_t *h);
void pm_proc_output_activity(struct pm_proc *p);
void pm_proc_stream_done(struct pm_proc *p);
void pm_proc_terminate(struct pm_proc *p, const char *reason);
int pm_proc_push_callback(struct pm_proc *p, const char *name);
void pm_proc_drained(struct pm_proc *p);

#endif
