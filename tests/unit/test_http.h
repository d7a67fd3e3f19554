/* A minimal HTTP/1.1 client over a Unix socket, to test the plugin server from outside. */
#ifndef TEST_HTTP_H
#define TEST_HTTP_H

#include <stddef.h>

struct test_reply {
  int status;
  char *body; /* NUL-terminated, malloc'd */
};

/* Connects to SOCKET_PATH; returns the descriptor or -1. */
int test_http_connect(const char *socket_path);

/* Sends one request on FD (Content-Length framed; CONTENT_LENGTH < 0 means use LEN) and reads
 * one response. Returns 0 on success. */
int test_http_exchange(int fd, const char *method, const char *path, const char *body, size_t len,
                       long long content_length, struct test_reply *reply);

/* connect + exchange + close. */
int test_http_post(const char *socket_path, const char *path, const char *body, struct test_reply *reply);

void test_reply_free(struct test_reply *reply);

/* A fresh temporary directory (mkdtemp) that the caller removes. */
char *test_tmpdir(void);
/* Removes DIR and everything below it (without following links); 0 on success. */
int test_rmtree(const char *dir);

#endif
