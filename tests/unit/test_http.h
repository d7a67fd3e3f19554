/* A minimal HTTP/1.1 client over a Unix socket, to test the plugin server from outside. */
#ifndef TEST_HTTP_H
#define TEST_HTTP_H

#include <stdbool.h>
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

/* What a test has read from a descriptor so far: a pipe, a child's output. */
struct test_transcript {
  char *text; /* NUL-terminated, malloc'd; NULL before the first read */
  size_t used, cap;
};

/* Reads FD into T until NEEDLE appears at or after offset FROM, or nothing arrives for
 * TIMEOUT_MS, or FD ends; returns whether NEEDLE appeared. */
bool test_read_until(int fd, struct test_transcript *t, size_t from, const char *needle, int timeout_ms);
void test_transcript_free(struct test_transcript *t);

/* A fresh temporary directory (mkdtemp) that the caller removes. */
char *test_tmpdir(void);
/* Removes DIR and everything below it (without following links); 0 on success. */
int test_rmtree(const char *dir);

#endif
