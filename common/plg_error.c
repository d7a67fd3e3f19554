#include "plg_error.h"

#include "plg_util.h"

#include <stdarg.h>
#include <stdlib.h>
#include <string.h>

static int error_set(plg_error_t *err, int status, int errno_, const char *fmt, va_list ap)
{
  char *msg = xvasprintf(fmt, ap);
  if (errno_ != 0) {
    char buf[256];
    char *text = strerror_r(errno_, buf, sizeof buf);
    char *full = xasprintf("%s: %s", msg, text);
    free(msg);
    msg = full;
  }
  if (err == NULL) {
    free(msg);
    return -1;
  }
  /* A second error overwrites the first only by mistake; keep the first, it is the cause. */
  if (*err != NULL) {
    free(msg);
    return -1;
  }
  struct plg_error *e = xmalloc(sizeof *e);
  e->status = status;
  e->errno_ = errno_;
  e->msg = msg;
  *err = e;
  return -1;
}

int plg_error_make(plg_error_t *err, int errno_, const char *fmt, ...)
{
  va_list ap;
  va_start(ap, fmt);
  error_set(err, 500, errno_, fmt, ap);
  va_end(ap);
  return -1;
}

int plg_error_bad_request(plg_error_t *err, const char *fmt, ...)
{
  va_list ap;
  va_start(ap, fmt);
  error_set(err, 400, 0, fmt, ap);
  va_end(ap);
  return -1;
}

int plg_error_not_found(plg_error_t *err, const char *fmt, ...)
{
  va_list ap;
  va_start(ap, fmt);
  error_set(err, 404, 0, fmt, ap);
  va_end(ap);
  return -1;
}

int plg_error_wrap(plg_error_t *err, const char *fmt, ...)
{
  if (err == NULL || *err == NULL)
    return -1;
  va_list ap;
  va_start(ap, fmt);
  char *context = xvasprintf(fmt, ap);
  va_end(ap);
  char *full = xasprintf("%s: %s", context, (*err)->msg);
  free(context);
  free((*err)->msg);
  (*err)->msg = full;
  return -1;
}

void plg_error_release(plg_error_t *err)
{
  if (err == NULL || *err == NULL)
    return;
  free((*err)->msg);
  free(*err);
  *err = NULL;
}
