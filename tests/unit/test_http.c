#include "test_http.h"

#include "plg_util.h"

#include <errno.h>
#include <ftw.h>
#include <poll.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/time.h>
#include <sys/un.h>
#include <unistd.h>

int test_http_connect(const char *socket_path)
{
  int fd = socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0);
  if (fd < 0)
    return -1;
  struct timeval tv = {.tv_sec = 20};
  setsockopt(fd, SOL_SOCKET, SO_RCVTIMEO, &tv, sizeof tv);
  struct sockaddr_un addr = {.sun_family = AF_UNIX};
  snprintf(addr.sun_path, sizeof addr.sun_path, "%s", socket_path);
  if (connect(fd, (struct sockaddr *)&addr, sizeof addr) < 0) {
    close(fd);
    return -1;
  }
  return fd;
}

static int send_all(int fd, const char *buf, size_t len)
{
  while (len > 0) {
    ssize_t n = send(fd, buf, len, MSG_NOSIGNAL);
    if (n < 0 && errno == EINTR)
      continue;
    if (n <= 0)
      return -1;
    buf += n;
    len -= (size_t)n;
  }
  return 0;
}

/* Reads headers, then exactly Content-Length bytes of body. */
static int read_response(int fd, struct test_reply *reply)
{
  size_t cap = 4096, used = 0;
  char *buf = xmalloc(cap + 1);
  char *body_start = NULL;
  long long content_length = -1;
  for (;;) {
    if (body_start != NULL && content_length >= 0 &&
        (long long)(used - (size_t)(body_start - buf)) >= content_length)
      break;
    if (used == cap) {
      size_t off = body_start ? (size_t)(body_start - buf) : 0;
      cap *= 2;
      buf = xrealloc(buf, cap + 1);
      if (body_start)
        body_start = buf + off;
    }
    ssize_t n = recv(fd, buf + used, cap - used, 0);
    if (n < 0 && errno == EINTR) /* valgrind lets SIGCHLD interrupt it, though it is ignored */
      continue;
    if (n <= 0)
      break;
    used += (size_t)n;
    buf[used] = '\0';
    if (body_start == NULL) {
      char *end = strstr(buf, "\r\n\r\n");
      if (end != NULL) {
        body_start = end + 4;
        char *cl = strcasestr(buf, "\r\nContent-Length:");
        if (cl != NULL && cl < end)
          content_length = atoll(cl + 17);
      }
    }
  }
  buf[used] = '\0';
  if (body_start == NULL || sscanf(buf, "HTTP/1.%*d %d", &reply->status) != 1) {
    free(buf);
    return -1;
  }
  reply->body = xstrdup(body_start);
  free(buf);
  return 0;
}

int test_http_exchange(int fd, const char *method, const char *path, const char *body, size_t len,
                       long long content_length, struct test_reply *reply)
{
  memset(reply, 0, sizeof *reply);
  char *head = xasprintf("%s %s HTTP/1.1\r\nHost: \r\nContent-Length: %lld\r\n\r\n", method, path,
                         content_length >= 0 ? content_length : (long long)len);
  int rc = send_all(fd, head, strlen(head));
  free(head);
  if (rc == 0 && len > 0)
    rc = send_all(fd, body, len);
  if (rc < 0)
    return -1;
  return read_response(fd, reply);
}

int test_http_post(const char *socket_path, const char *path, const char *body, struct test_reply *reply)
{
  int fd = test_http_connect(socket_path);
  if (fd < 0)
    return -1;
  int rc = test_http_exchange(fd, "POST", path, body, strlen(body), -1, reply);
  close(fd);
  return rc;
}

void test_reply_free(struct test_reply *reply)
{
  free(reply->body);
  reply->body = NULL;
}

bool test_read_until(int fd, struct test_transcript *t, size_t from, const char *needle, int timeout_ms)
{
  if (t->text == NULL) {
    t->cap = 1 << 16;
    t->text = xmalloc(t->cap + 1);
    t->text[0] = '\0';
    t->used = 0;
  }
  while (strstr(t->text + (from < t->used ? from : t->used), needle) == NULL) {
    struct pollfd p = {.fd = fd, .events = POLLIN};
    if (poll(&p, 1, timeout_ms) <= 0)
      return false;
    if (t->used == t->cap) {
      t->cap *= 2;
      t->text = xrealloc(t->text, t->cap + 1);
    }
    ssize_t n = read(fd, t->text + t->used, t->cap - t->used);
    if (n < 0 && errno == EINTR)
      continue;
    if (n <= 0)
      return false;
    t->used += (size_t)n;
    t->text[t->used] = '\0';
  }
  return true;
}

void test_transcript_free(struct test_transcript *t)
{
  free(t->text);
  t->text = NULL;
  t->used = t->cap = 0;
}

char *test_tmpdir(void)
{
  char *dir = xstrdup("/tmp/plg-test-XXXXXX");
  if (mkdtemp(dir) == NULL) {
    free(dir);
    return NULL;
  }
  return dir;
}

static int remove_entry(const char *path, const struct stat *st, int type, struct FTW *ftw)
{
  (void)st;
  (void)ftw;
  return type == FTW_DP ? rmdir(path) : unlink(path);
}

int test_rmtree(const char *dir)
{
  return nftw(dir, remove_entry, 16, FTW_DEPTH | FTW_PHYS);
}
