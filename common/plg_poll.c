#include "plg_poll.h"

#include "plg_util.h"

#include <errno.h>
#include <poll.h>

int plg_poll_wait(int fd, short events, int64_t deadline_ms, int cancel_fd)
{
  struct pollfd p[2] = {{.fd = fd, .events = events}, {.fd = cancel_fd, .events = POLLIN}};
  for (;;) {
    int64_t left = deadline_ms - plg_now_ms();
    int rc = poll(p, cancel_fd >= 0 ? 2 : 1, left <= 0 ? 0 : left > 60000 ? 60000 : (int)left);
    if (rc < 0 && errno == EINTR)
      continue;
    if (rc < 0)
      return -1;
    if (cancel_fd >= 0 && (p[1].revents & POLLIN)) {
      errno = ECANCELED;
      return -1;
    }
    if (p[0].revents != 0)
      return p[0].revents;
    if (left <= 0)
      return 0;
  }
}
