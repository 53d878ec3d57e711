/*
** The spawn system call of procmon's own: clone(CLONE_VM | CLONE_VFORK)
** with a child that does what posix_spawn did (process group or session,
** stdio, cwd, only descriptors 0-2, default signals, empty mask) plus what
** posix_spawn cannot: PR_SET_PDEATHSIG, so that a non-detached child dies
** with its owner however the owner dies (kill -9 included), and the file
** descriptor limit the process started with.
**
** The child shares our memory until it execs, like vfork: it runs on a
** stack in our frame, calls only async-signal-safe functions, and starts
** with every signal blocked and every handler reset, so that no handler of
** ours can run on our memory. It reports a failure through a shared record
** and, where the clone was turned into a plain fork (valgrind does that), a
** close-on-exec pipe that reaches EOF at exec.
*/
#include <errno.h>
#include <fcntl.h>
#include <pthread.h>
#include <sched.h>
#include <signal.h>
#include <string.h>
#include <sys/prctl.h>
#include <sys/resource.h>
#include <sys/wait.h>
#include <unistd.h>

#include "pm_process.h"

/* The child needs little: a few frames and the dynamic linker's lazy
** binding of the functions it calls (which saves vector registers). */
#define PM_CHILD_STACK (32 * 1024)

#if defined(__SANITIZE_ADDRESS__)
#define PM_NO_ASAN __attribute__((no_sanitize_address))
#elif defined(__has_feature)
#if __has_feature(address_sanitizer)
#define PM_NO_ASAN __attribute__((no_sanitize_address))
#endif
#endif
#ifndef PM_NO_ASAN
#define PM_NO_ASAN
#endif

/* {=== the descriptor limit ===} */

/* The limit the process started with: what every child gets back. */
static struct rlimit start_limit;
static int start_limit_ok;
static pthread_once_t limit_once = PTHREAD_ONCE_INIT;
static pthread_mutex_t limit_lock = PTHREAD_MUTEX_INITIALIZER;

static void record_limit(void) {
  start_limit_ok = getrlimit(RLIMIT_NOFILE, &start_limit) == 0;
}

void pm_fd_limit_init(void) {
  pthread_once(&limit_once, record_limit);
}

/* Raises the soft limit to the hard one; 1 when it went up. */
static int raise_limit(void) {
  struct rlimit rl;
  int raised = 0;
  pthread_mutex_lock(&limit_lock);
  if (getrlimit(RLIMIT_NOFILE, &rl) == 0 && rl.rlim_cur < rl.rlim_max) {
    rl.rlim_cur = rl.rlim_max;
    raised = setrlimit(RLIMIT_NOFILE, &rl) == 0;
  }
  pthread_mutex_unlock(&limit_lock);
  return raised;
}

/*
** Called with each descriptor procmon opens for a child (or with -1 and
** EMFILE after an open failed): once they reach 3/4 of the soft limit, the
** limit goes up to the hard one, so that a thousand children (a pidfd and
** up to three pipes each) fit. Until then, the process and anything it
** starts outside procmon (io.popen, os.execute) keep the limit they had.
** Returns 1 when a failed open is worth retrying.
*/
int pm_fd_pressure(int fd) {
  struct rlimit rl;
  if (fd < 0) return errno == EMFILE && raise_limit();
  if (getrlimit(RLIMIT_NOFILE, &rl) == 0 && rl.rlim_cur != RLIM_INFINITY &&
      (rlim_t)fd >= rl.rlim_cur / 4 * 3)
    raise_limit();
  return 0;
}

/* {=== the child ===} */

typedef struct child_args {
  const pm_spawn_t *req;
  pid_t parent;         /* a child whose parent is someone else: owner died */
  int err_fd;           /* write end of the close-on-exec pipe */
  int restore_limit;
  struct rlimit limit;
  int max_fd;           /* for the close loop where close_range is missing */
  volatile int stage;   /* shared with the parent: what failed, or -1 */
  volatile int err;     /* errno of the failure; -1 until the child ran */
} child_args_t;

PM_NO_ASAN static void child_fail(child_args_t *a, int stage) {
  int msg[2];
  msg[0] = stage;
  msg[1] = errno;
  a->stage = stage;
  a->err = errno;
  while (write(a->err_fd, msg, sizeof msg) < 0 && errno == EINTR) {}
  _exit(127);
}

/* Handlers reset first: a signal must not run our handler on our memory.
** Ignored signals become default too (SIGPIPE is ignored here). */
PM_NO_ASAN static void child_default_signals(void) {
  struct sigaction dfl;
  memset(&dfl, 0, sizeof dfl);
  dfl.sa_handler = SIG_DFL;
  for (int sig = 1; sig < NSIG; sig++)
    if (sig != SIGKILL && sig != SIGSTOP) sigaction(sig, &dfl, NULL);
}

/* Moves a descriptor off 0-2 so that the dup2s below cannot clobber it. */
PM_NO_ASAN static int child_lift(int fd) {
  return fd >= 0 && fd < 3 ? fcntl(fd, F_DUPFD_CLOEXEC, 3) : fd;
}

PM_NO_ASAN static void child_stdio(child_args_t *a) {
  int fds[3], efd = child_lift(a->err_fd);
  if (efd < 0) child_fail(a, PM_SPAWN_STDIO);
  a->err_fd = efd;
  for (int i = 0; i < 3; i++)
    if ((fds[i] = child_lift(a->req->fds[i])) < 0 && a->req->fds[i] >= 0)
      child_fail(a, PM_SPAWN_STDIO);
  /* dup2 clears close-on-exec on the copy; -1 inherits ours. */
  for (int i = 0; i < 3; i++)
    if (fds[i] >= 0 && dup2(fds[i], i) < 0) child_fail(a, PM_SPAWN_STDIO);
}

/* Only 0, 1 and 2 reach the program: a hook's background job must not hold
** a pipe that Claude Code reads until EOF. The error pipe stays to exec. */
PM_NO_ASAN static void child_close_others(child_args_t *a) {
  unsigned int keep = (unsigned int)a->err_fd;
  if ((keep == 3 || close_range(3, keep - 1, 0) == 0) &&
      close_range(keep + 1, ~0U, 0) == 0)
    return;
  for (int fd = 3; fd < a->max_fd; fd++)  /* kernels before 5.9 */
    if (fd != a->err_fd) close(fd);
}

PM_NO_ASAN static int child_main(void *arg) {
  child_args_t *a = (child_args_t *)arg;
  const pm_spawn_t *r = a->req;
  sigset_t none;
  child_default_signals();
  if (r->detached ? setsid() < 0 : setpgid(0, 0) != 0) child_fail(a, PM_SPAWN_SETUP);
  if (!r->detached) {
    if (prctl(PR_SET_PDEATHSIG, SIGKILL) != 0) child_fail(a, PM_SPAWN_SETUP);
    if (getppid() != a->parent) _exit(127);  /* the owner died before that */
  }
  child_stdio(a);
  if (r->cwd && chdir(r->cwd) != 0) child_fail(a, PM_SPAWN_CWD);
  if (a->restore_limit) setrlimit(RLIMIT_NOFILE, &a->limit);
  child_close_others(a);
  sigemptyset(&none);
  sigprocmask(SIG_SETMASK, &none, NULL);
  a->err = 0;
  execve(r->file, r->argv, r->envp);
  child_fail(a, PM_SPAWN_EXEC);
  return 127;
}

/* {=== the parent ===} */

static void prepare_args(child_args_t *a, const pm_spawn_t *r, int err_fd) {
  struct rlimit now;
  memset(a, 0, sizeof *a);
  a->req = r;
  a->parent = getpid();
  a->err_fd = err_fd;
  a->stage = -1;
  a->err = -1;
  a->max_fd = 65536;
  pm_fd_limit_init();
  if (getrlimit(RLIMIT_NOFILE, &now) == 0) {
    if (now.rlim_cur < (rlim_t)a->max_fd) a->max_fd = (int)now.rlim_cur;
    a->restore_limit = start_limit_ok && now.rlim_cur != start_limit.rlim_cur;
    a->limit = start_limit;
    if (a->limit.rlim_max > now.rlim_max) a->limit.rlim_max = now.rlim_max;
  }
}

static pid_t clone_child(child_args_t *a, int *pidfd) {
  char stack[PM_CHILD_STACK] __attribute__((aligned(16)));
  int flags = CLONE_VM | CLONE_VFORK | SIGCHLD;
  sigset_t all, old;
  pid_t pid;
  int err;
  sigfillset(&all);
  pthread_sigmask(SIG_SETMASK, &all, &old);
  pid = clone(child_main, stack + sizeof stack, flags | (pidfd ? CLONE_PIDFD : 0), a, pidfd);
  if (pid < 0 && pidfd && errno == EINVAL) {  /* a kernel before 5.2 */
    *pidfd = -1;
    pid = clone(child_main, stack + sizeof stack, flags, a, NULL);
  }
  err = errno;
  pthread_sigmask(SIG_SETMASK, &old, NULL);
  errno = err;
  return pid;
}

/* The child's verdict: 0 when it reached exec, else a libuv error. */
static int child_verdict(child_args_t *a, int err_fd) {
  int msg[2];
  ssize_t n;
  if (a->err == -1) {  /* not shared memory (a fork): ask the pipe */
    do n = read(err_fd, msg, sizeof msg); while (n < 0 && errno == EINTR);
    if (n == (ssize_t)sizeof msg) {
      a->stage = msg[0];
      a->err = msg[1];
    } else {
      a->err = 0;
    }
  }
  return a->err == 0 ? 0 : uv_translate_sys_error(a->err);
}

/*
** Starts r->file with r->argv and r->envp (the PATH search is done). Fills
** r->pid and r->pidfd (with want_pidfd; -1 where the kernel has none) and
** returns 0, or returns a libuv error with r->stage saying which step
** failed (PM_SPAWN_CWD: the working directory).
*/
int pm_spawn(pm_spawn_t *r) {
  child_args_t a;
  int ep[2], err, pidfd = -1;
  pid_t pid;
  r->pid = -1;
  r->pidfd = -1;
  r->stage = PM_SPAWN_SETUP;
  if (pipe2(ep, O_CLOEXEC) != 0 && !(pm_fd_pressure(-1) && pipe2(ep, O_CLOEXEC) == 0))
    return pm_errno();
  prepare_args(&a, r, ep[1]);
  pid = clone_child(&a, r->want_pidfd ? &pidfd : NULL);
  err = pid < 0 ? pm_errno() : 0;
  close(ep[1]);
  if (err == 0) err = child_verdict(&a, ep[0]);
  close(ep[0]);
  if (err != 0 && pid > 0) {
    if (pidfd >= 0) close(pidfd);
    while (waitpid(pid, NULL, 0) < 0 && errno == EINTR) {}
    r->stage = a.stage;
    return err;
  }
  if (err != 0) return err;
  r->pid = pid;
  r->pidfd = pidfd;
  if (pidfd >= 0) pm_fd_pressure(pidfd);
  return 0;
}
