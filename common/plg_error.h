/* One error type for every fallible function: the message names the thing that failed, and it
 * becomes the plugin's {"Err": ...} reply in exactly one place, the HTTP boundary. */
#ifndef PLG_ERROR_H
#define PLG_ERROR_H

struct plg_error {
  int status; /* HTTP status at the boundary: 400 bad request, 404 not found, 500 otherwise */
  int errno_; /* errno behind the failure, 0 when none */
  char *msg;
};
typedef struct plg_error *plg_error_t;

/* Sets *err (which must be NULL) and returns -1, so callers can `return plg_error_make(...)`.
 * With a non-zero errno_ the message ends with ": <strerror>". */
int plg_error_make(plg_error_t *err, int errno_, const char *fmt, ...) __attribute__((format(printf, 3, 4)));

/* Same, for a fault in the request itself (HTTP 400). */
int plg_error_bad_request(plg_error_t *err, const char *fmt, ...) __attribute__((format(printf, 2, 3)));

/* Same, for something the request names that does not exist (HTTP 404): an expected answer,
 * Docker asks Get for every name before it creates it, so it is not logged as a failure. */
int plg_error_not_found(plg_error_t *err, const char *fmt, ...) __attribute__((format(printf, 2, 3)));

/* Prefixes context to an existing error: "<context>: <previous message>". Returns -1. */
int plg_error_wrap(plg_error_t *err, const char *fmt, ...) __attribute__((format(printf, 2, 3)));

void plg_error_release(plg_error_t *err);

#define cleanup_error __attribute__((cleanup(plg_error_release)))

#endif
