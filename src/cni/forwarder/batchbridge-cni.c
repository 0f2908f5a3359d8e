/*
 * batchbridge-cni: the executable a CNI runtime (containerd, Podman, ...) runs for every call.
 *
 * It holds no CNI logic and parses no JSON. VERSION is answered here, so runtimes can probe the
 * plugin while the daemon is down. Every other command is passed whole (the environment and
 * stdin) to the batchbridge daemon over a unix socket in one length-prefixed frame (layout in
 * src/cni/frame.ts and docs/cni.md), and the daemon's answer (exit status, stdout, stderr) is
 * relayed. A C program because the runtime starts it once per call: Node would cost 15-40 ms
 * of CPU each time, this costs about what a do-nothing shell script does (docs/cni.md).
 *
 * The socket: $BATCHBRIDGE_CNI_SOCKET, else the path in bb_slot below, which
 * `batchbridge cni-install --socket PATH` rewrites in the installed copy (compiled default
 * /run/batchbridge/cni.sock); likewise the ADD wait ($BATCHBRIDGE_CNI_ADD_WAIT_MS, 5000 ms).
 *
 * Daemon not reachable: ADD retries for that long, then fails with code 11; DEL is written to
 * <socket>.spool/ (atomic rename, file and directory fsynced) and succeeds, the daemon replays
 * it when it starts; CHECK and GC fail with 11; STATUS fails with 50.
 */
#define _GNU_SOURCE
#include <errno.h>
#include <fcntl.h>
#include <signal.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/un.h>
#include <time.h>
#include <unistd.h>

extern char **environ;

#define FRAME_VERSION 1
#define FRAME_REQUEST 1
#define FRAME_REPLY 2
#define FRAME_HEADER 24
#define REPLY_FLAG_SPOOL 1u
#define ENV_MAX (1u << 20)
#define STDIN_MAX (16u << 20)
#define CLAIM_MAX 255u
#define STDOUT_MAX (16u << 20)
#define STDERR_MAX (1u << 20)
#define ADD_WAIT_MAX_MS 600000L
#define RETRY_STEP_MS 50L

#define VERSION_JSON \
  "{\"cniVersion\":\"1.1.0\",\"supportedVersions\":[\"0.3.0\",\"0.3.1\",\"0.4.0\",\"1.0.0\",\"1.1.0\"]}\n"

/*
 * Patched in place by cni-install (src/cni/install.ts): it finds the magic, which must occur
 * exactly once in the file, and rewrites the two NUL-padded fields after it. A non-const
 * global, so the compiler reads it at run time instead of folding the default in.
 */
#define SLOT_MAGIC "batchbridge-cni:slot:v1:7d3e91a"
struct bb_slot {
  char magic[32];
  char socket[108]; /* sun_path size: at most 107 bytes and a NUL */
  char add_wait_ms[12];
};
_Static_assert(sizeof(SLOT_MAGIC) == 32, "the slot magic is 31 characters and a NUL");
_Static_assert(sizeof(struct bb_slot) == 152, "the slot layout is what install.ts patches");
__attribute__((used)) struct bb_slot bb_slot = {SLOT_MAGIC, "/run/batchbridge/cni.sock", "5000"};

enum cmd { CMD_ADD, CMD_DEL, CMD_CHECK, CMD_GC, CMD_STATUS };

static const char *sock_path;

/* ---- output --------------------------------------------------------------------------- */

/* Writes everything or fails (-1, errno set). SIGPIPE is ignored, so a closed socket is EPIPE. */
static int put_all(int fd, const void *buf, size_t n) {
  const char *p = buf;
  while (n > 0) {
    ssize_t w = write(fd, p, n);
    if (w < 0 && errno == EINTR) continue;
    if (w <= 0) return -1;
    p += w;
    n -= (size_t)w;
  }
  return 0;
}

/* Output to the runtime: if it went away there is nobody left to tell. */
static void write_all(int fd, const char *p, size_t n) {
  (void)put_all(fd, p, n);
}

/* JSON string escaping only: quotes, backslashes and control characters. */
static size_t json_escape(char *out, size_t cap, const char *s) {
  size_t o = 0;
  for (; *s != '\0' && o + 7 < cap; s++) {
    unsigned char c = (unsigned char)*s;
    if (c == '"' || c == '\\') {
      out[o++] = '\\';
      out[o++] = (char)c;
    } else if (c < 0x20) {
      o += (size_t)snprintf(out + o, cap - o, "\\u%04x", c);
    } else {
      out[o++] = (char)c;
    }
  }
  out[o] = '\0';
  return o;
}

/* Prints the spec's error structure on stdout and exits non-zero. */
__attribute__((noreturn)) static void fail(int code, const char *msg, const char *details) {
  char m[2048], d[2048], buf[4400];
  json_escape(m, sizeof m, msg);
  json_escape(d, sizeof d, details);
  int n = snprintf(buf, sizeof buf, "{\"cniVersion\":\"1.1.0\",\"code\":%d,\"msg\":\"%s\",\"details\":\"%s\"}\n", code, m, d);
  if (n > 0) write_all(1, buf, (size_t)n < sizeof buf ? (size_t)n : sizeof buf - 1);
  exit(1);
}

/* ---- settings ------------------------------------------------------------------------- */

static long parse_ms(const char *s, const char *what) {
  char *end;
  errno = 0;
  long v = strtol(s, &end, 10);
  if (s[0] < '0' || s[0] > '9' || *end != '\0' || errno != 0 || v > ADD_WAIT_MAX_MS) {
    char msg[256];
    snprintf(msg, sizeof msg, "%s must be a whole number of milliseconds from 0 to %ld", what, ADD_WAIT_MAX_MS);
    fail(4, msg, s);
  }
  return v;
}

static const char *resolve_socket(void) {
  const char *env = getenv("BATCHBRIDGE_CNI_SOCKET");
  bb_slot.socket[sizeof bb_slot.socket - 1] = '\0';
  const char *p = (env != NULL && env[0] != '\0') ? env : bb_slot.socket;
  if (p[0] != '/' || strlen(p) >= sizeof(((struct sockaddr_un *)0)->sun_path)) {
    fail(4, "the batchbridge daemon socket must be an absolute path of at most 107 bytes", p);
  }
  return p;
}

static long resolve_add_wait(void) {
  const char *env = getenv("BATCHBRIDGE_CNI_ADD_WAIT_MS");
  if (env != NULL && env[0] != '\0') return parse_ms(env, "BATCHBRIDGE_CNI_ADD_WAIT_MS");
  bb_slot.add_wait_ms[sizeof bb_slot.add_wait_ms - 1] = '\0';
  return parse_ms(bb_slot.add_wait_ms, "the ADD wait compiled into batchbridge-cni");
}

/* ---- the request frame ---------------------------------------------------------------- */

static void put_u32(unsigned char *p, uint32_t v) {
  p[0] = (unsigned char)(v >> 24);
  p[1] = (unsigned char)(v >> 16);
  p[2] = (unsigned char)(v >> 8);
  p[3] = (unsigned char)v;
}

static uint32_t get_u32(const unsigned char *p) {
  return ((uint32_t)p[0] << 24) | ((uint32_t)p[1] << 16) | ((uint32_t)p[2] << 8) | (uint32_t)p[3];
}

struct frame {
  unsigned char *buf; /* header, env, stdin, and room for a claim */
  size_t len;         /* without a claim */
};

static void read_stdin_into(struct frame *f, size_t *cap, size_t limit) {
  for (;;) {
    if (f->len > limit) fail(5, "the network configuration on stdin is larger than 16 MiB", "");
    if (*cap - f->len < 65536 + CLAIM_MAX) {
      size_t ncap = *cap * 2;
      unsigned char *nb = realloc(f->buf, ncap);
      if (nb == NULL) fail(5, "out of memory reading the network configuration", "");
      f->buf = nb;
      *cap = ncap;
    }
    ssize_t r = read(0, f->buf + f->len, *cap - f->len - CLAIM_MAX);
    if (r == 0) return;
    if (r < 0) {
      if (errno == EINTR) continue;
      fail(5, "cannot read the network configuration from stdin", strerror(errno));
    }
    f->len += (size_t)r;
  }
}

static struct frame build_frame(void) {
  size_t env_len = 0;
  for (char **e = environ; *e != NULL; e++) env_len += strlen(*e) + 1;
  if (env_len > ENV_MAX) fail(5, "the environment is larger than the 1 MiB batchbridge passes on", "");
  size_t cap = FRAME_HEADER + env_len + CLAIM_MAX + 65536 * 2;
  struct frame f = {malloc(cap), FRAME_HEADER};
  if (f.buf == NULL) fail(5, "out of memory", "");
  for (char **e = environ; *e != NULL; e++) {
    size_t n = strlen(*e) + 1;
    memcpy(f.buf + f.len, *e, n);
    f.len += n;
  }
  size_t stdin_at = f.len;
  read_stdin_into(&f, &cap, stdin_at + STDIN_MAX);
  size_t stdin_len = f.len - stdin_at;
  memcpy(f.buf, "BBCN", 4);
  f.buf[4] = FRAME_VERSION;
  f.buf[5] = FRAME_REQUEST;
  f.buf[6] = 0;
  f.buf[7] = 0;
  put_u32(f.buf + 8, 0);
  put_u32(f.buf + 12, (uint32_t)env_len);
  put_u32(f.buf + 16, (uint32_t)stdin_len);
  put_u32(f.buf + 20, 0);
  return f;
}

/* ---- talking to the daemon ------------------------------------------------------------ */

static int try_connect(int *err) {
  int fd = socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0);
  if (fd < 0) {
    *err = errno;
    return -1;
  }
  struct sockaddr_un a;
  memset(&a, 0, sizeof a);
  a.sun_family = AF_UNIX;
  memcpy(a.sun_path, sock_path, strlen(sock_path) + 1);
  if (connect(fd, (struct sockaddr *)&a, sizeof a) == 0) return fd;
  *err = errno;
  close(fd);
  return -1;
}

static long now_ms(void) {
  struct timespec ts;
  clock_gettime(CLOCK_MONOTONIC, &ts);
  return (long)ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
}

/* Retries while the socket is missing or refuses (daemon down or restarting), up to wait_ms. */
static int connect_waiting(long wait_ms, int *err) {
  long deadline = now_ms() + wait_ms;
  for (;;) {
    int fd = try_connect(err);
    if (fd >= 0) return fd;
    if (*err != ENOENT && *err != ECONNREFUSED && *err != EAGAIN) return -1;
    long left = deadline - now_ms();
    if (left <= 0) return -1;
    long step = left < RETRY_STEP_MS ? left : RETRY_STEP_MS;
    struct timespec ts = {step / 1000, (step % 1000) * 1000000L};
    nanosleep(&ts, NULL);
  }
}

static int recv_all(int fd, unsigned char *p, size_t n) {
  while (n > 0) {
    ssize_t r = recv(fd, p, n, 0);
    if (r == 0) return -1;
    if (r < 0) {
      if (errno == EINTR) continue;
      return -1;
    }
    p += r;
    n -= (size_t)r;
  }
  return 0;
}

struct reply {
  int code;
  unsigned flags;
  unsigned char *out;
  size_t out_len;
  unsigned char *err;
  size_t err_len;
};

/* Sends the frame and reads the answer. Returns -1 when no complete, well-formed answer came. */
static int exchange(int fd, const unsigned char *frame, size_t len, struct reply *r) {
  unsigned char h[FRAME_HEADER];
  if (put_all(fd, frame, len) != 0 || recv_all(fd, h, sizeof h) != 0) return -1;
  if (memcmp(h, "BBCN", 4) != 0 || h[4] != FRAME_VERSION || h[5] != FRAME_REPLY) return -1;
  uint32_t a = get_u32(h + 12), b = get_u32(h + 16), c = get_u32(h + 20);
  if (a > STDOUT_MAX || b > STDERR_MAX || c != 0) return -1;
  r->flags = ((unsigned)h[6] << 8) | h[7];
  r->code = (int)(int32_t)get_u32(h + 8);
  r->out = malloc(a + 1);
  r->err = malloc(b + 1);
  if (r->out == NULL || r->err == NULL) return -1;
  if (recv_all(fd, r->out, a) != 0 || recv_all(fd, r->err, b) != 0) return -1;
  r->out_len = a;
  r->err_len = b;
  return 0;
}

__attribute__((noreturn)) static void relay(const struct reply *r) {
  write_all(1, (const char *)r->out, r->out_len);
  write_all(2, (const char *)r->err, r->err_len);
  exit(r->code >= 0 && r->code <= 255 ? r->code : 1);
}

/* ---- the DEL spool -------------------------------------------------------------------- */

static int fsync_dir(const char *dir) {
  int fd = open(dir, O_RDONLY | O_DIRECTORY | O_CLOEXEC);
  if (fd < 0) return -1;
  int rc = fsync(fd);
  close(fd);
  return rc;
}

/* mkdir -p for the socket's directory and the spool directory, 0700 like the daemon's. */
static int make_dirs(char *spool) {
  for (char *p = spool + 1; *p != '\0'; p++) {
    if (*p != '/') continue;
    *p = '\0';
    int rc = mkdir(spool, 0700);
    int e = errno;
    *p = '/';
    if (rc != 0 && e != EEXIST) return -1;
  }
  if (mkdir(spool, 0700) == 0) {
    char *slash = strrchr(spool, '/');
    *slash = '\0';
    int rc = fsync_dir(slash == spool ? "/" : spool);
    *slash = '/';
    return rc;
  }
  return errno == EEXIST ? 0 : -1;
}

/*
 * Records the DEL durably: <socket>.spool/del-<ns since epoch>-<pid>-<n>.frame, written under a
 * dot-name, fsynced, renamed, and the directory fsynced. Names sort oldest first.
 */
static void spool_del(const struct frame *f, char *name, size_t name_cap) {
  char spool[160], tmp[320], final_path[320];
  snprintf(spool, sizeof spool, "%s.spool", sock_path);
  if (make_dirs(spool) != 0) fail(11, "the batchbridge daemon is not reachable and the DEL cannot be recorded", strerror(errno));
  struct timespec ts;
  clock_gettime(CLOCK_REALTIME, &ts);
  unsigned long long ns = (unsigned long long)ts.tv_sec * 1000000000ull + (unsigned long long)ts.tv_nsec;
  for (int n = 0;; n++) {
    snprintf(name, name_cap, "del-%020llu-%d-%d.frame", ns, (int)getpid(), n);
    snprintf(tmp, sizeof tmp, "%s/.tmp-%s", spool, name);
    snprintf(final_path, sizeof final_path, "%s/%s", spool, name);
    int fd = open(tmp, O_WRONLY | O_CREAT | O_EXCL | O_CLOEXEC, 0600);
    if (fd < 0 && errno == EEXIST && n < 100) continue;
    if (fd < 0) break;
    int ok = put_all(fd, f->buf, f->len) == 0;
    if (ok && fsync(fd) != 0) ok = 0;
    if (close(fd) != 0) ok = 0;
    if (ok && rename(tmp, final_path) == 0 && fsync_dir(spool) == 0) return;
    int e = errno;
    unlink(tmp);
    errno = e;
    break;
  }
  fail(11, "the batchbridge daemon is not reachable and the DEL cannot be recorded", strerror(errno));
}

/*
 * DEL when the daemon did not answer. After recording it, one more attempt: a daemon that came
 * up meanwhile may have listed the spool before the file appeared, so it is asked to do this
 * DEL now (the frame names the spool file, and the daemon does each spooled DEL once).
 * Either way the DEL is now safe, so it succeeds.
 */
__attribute__((noreturn)) static void del_spooled(struct frame *f) {
  char name[128];
  spool_del(f, name, sizeof name);
  int err;
  int fd = try_connect(&err);
  if (fd >= 0) {
    size_t n = strlen(name);
    memcpy(f->buf + f->len, name, n);
    put_u32(f->buf + 20, (uint32_t)n);
    struct reply r;
    memset(&r, 0, sizeof r);
    if (exchange(fd, f->buf, f->len + n, &r) == 0 && (r.flags & REPLY_FLAG_SPOOL) == 0) relay(&r);
  }
  exit(0);
}

/* ---- main ----------------------------------------------------------------------------- */

__attribute__((noreturn)) static void unreachable(enum cmd c, int err, long waited_ms) {
  char msg[512], details[512];
  if (c == CMD_STATUS) {
    snprintf(msg, sizeof msg, "the batchbridge daemon is not running (socket %s)", sock_path);
    snprintf(details, sizeof details, "connect: %s; start it with `batchbridge serve`", strerror(err));
    fail(50, msg, details);
  }
  if (waited_ms > 0) snprintf(msg, sizeof msg, "the batchbridge daemon is not reachable at %s after waiting %ld ms", sock_path, waited_ms);
  else snprintf(msg, sizeof msg, "the batchbridge daemon is not reachable at %s", sock_path);
  snprintf(details, sizeof details, "connect: %s; is `batchbridge serve` running? try again later", strerror(err));
  fail(11, msg, details);
}

int main(void) {
  signal(SIGPIPE, SIG_IGN);
  const char *command = getenv("CNI_COMMAND");
  if (command == NULL || command[0] == '\0') {
    const char *about = "batchbridge-cni: CNI plugin; forwards every call to the batchbridge daemon\n"
                        "CNI protocol versions supported: 0.3.0, 0.3.1, 0.4.0, 1.0.0, 1.1.0\n";
    write_all(2, about, strlen(about));
    return 0;
  }
  if (strcmp(command, "VERSION") == 0) {
    write_all(1, VERSION_JSON, sizeof VERSION_JSON - 1);
    return 0;
  }
  enum cmd c;
  if (strcmp(command, "ADD") == 0) c = CMD_ADD;
  else if (strcmp(command, "DEL") == 0) c = CMD_DEL;
  else if (strcmp(command, "CHECK") == 0) c = CMD_CHECK;
  else if (strcmp(command, "GC") == 0) c = CMD_GC;
  else if (strcmp(command, "STATUS") == 0) c = CMD_STATUS;
  else fail(4, "unknown CNI_COMMAND (ADD, DEL, CHECK, GC, STATUS, VERSION)", command);

  sock_path = resolve_socket();
  long wait_ms = c == CMD_ADD ? resolve_add_wait() : 0;
  struct frame f = build_frame();

  int err = 0;
  int fd = c == CMD_ADD ? connect_waiting(wait_ms, &err) : try_connect(&err);
  if (fd < 0) {
    if (c == CMD_DEL) del_spooled(&f);
    unreachable(c, err, wait_ms);
  }
  struct reply r;
  memset(&r, 0, sizeof r);
  if (exchange(fd, f.buf, f.len, &r) != 0) {
    if (c == CMD_DEL) del_spooled(&f);
    char msg[512];
    snprintf(msg, sizeof msg, "the batchbridge daemon at %s closed the connection without answering", sock_path);
    if (c == CMD_STATUS) fail(50, msg, "it stopped or restarted while handling STATUS");
    fail(11, msg, c == CMD_ADD ? "it stopped or restarted during the ADD; the runtime's DEL will clean up whatever was done" : "it stopped or restarted; try again later");
  }
  if (c == CMD_DEL && (r.flags & REPLY_FLAG_SPOOL) != 0) del_spooled(&f);
  relay(&r);
  return 0;
}
