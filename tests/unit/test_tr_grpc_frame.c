/* gRPC's framing as pure functions: the 5-byte message prefix, the decoder fed in arbitrary pieces,
 * and the status trailers and timeout header. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>

#include <cmocka.h>

#include "plg_util.h"
#include "tr_grpc_frame.h"

#include <stdlib.h>
#include <string.h>

/* A message of LEN bytes behind a prefix with FLAG; caller frees. */
static uint8_t *framed(uint8_t flag, uint32_t declared, const char *body, size_t len, size_t *out_len)
{
  uint8_t *out = xmalloc(5 + len);
  out[0] = flag;
  out[1] = (uint8_t)(declared >> 24);
  out[2] = (uint8_t)(declared >> 16);
  out[3] = (uint8_t)(declared >> 8);
  out[4] = (uint8_t)declared;
  memcpy(out + 5, body, len);
  *out_len = 5 + len;
  return out;
}

static void feed_ok(struct tr_grpc_decoder *d, const uint8_t *data, size_t len)
{
  plg_error_t err = NULL;
  if (tr_grpc_decoder_feed(d, data, len, &err) < 0)
    fail_msg("feed refused: %s", err->msg);
}

/* The decoder must refuse the feed with a message containing NEEDLE. */
static void feed_refused(struct tr_grpc_decoder *d, const uint8_t *data, size_t len, const char *needle)
{
  plg_error_t err = NULL;
  if (tr_grpc_decoder_feed(d, data, len, &err) == 0)
    fail_msg("a feed that should fail with \"%s\" was accepted", needle);
  assert_non_null(err);
  if (strstr(err->msg, needle) == NULL)
    fail_msg("error \"%s\" does not contain \"%s\"", err->msg, needle);
  plg_error_release(&err);
}

static void expect_next(struct tr_grpc_decoder *d, const char *body, size_t len)
{
  uint8_t *msg = NULL;
  size_t n = 99;
  assert_int_equal(tr_grpc_decoder_next(d, &msg, &n), 1);
  assert_non_null(msg);
  assert_int_equal(n, len);
  assert_memory_equal(msg, body, len);
  free(msg);
}

static void expect_nothing(struct tr_grpc_decoder *d)
{
  uint8_t *msg = NULL;
  size_t n = 0;
  assert_int_equal(tr_grpc_decoder_next(d, &msg, &n), 0);
  assert_null(msg);
}

static void a_frame_is_the_message_behind_a_five_byte_prefix(void **state)
{
  (void)state;
  size_t n;
  cleanup_free uint8_t *f = tr_grpc_frame((const uint8_t *)"abc", 3, &n);
  assert_int_equal(n, 8);
  assert_memory_equal(f, ((const uint8_t[]){0, 0, 0, 0, 3, 'a', 'b', 'c'}), 8);

  /* the length is big-endian over four bytes */
  size_t big = 0x010203;
  cleanup_free uint8_t *body = xcalloc(big, 1);
  body[big - 1] = 0x7e;
  cleanup_free uint8_t *g = tr_grpc_frame(body, big, &n);
  assert_int_equal(n, big + 5);
  assert_memory_equal(g, ((const uint8_t[]){0, 0, 0x01, 0x02, 0x03}), 5);
  assert_int_equal(g[n - 1], 0x7e);
}

static void an_empty_message_is_a_bare_prefix(void **state)
{
  (void)state;
  size_t n = 99;
  cleanup_free uint8_t *f = tr_grpc_frame(NULL, 0, &n);
  assert_int_equal(n, 5);
  assert_memory_equal(f, ((const uint8_t[]){0, 0, 0, 0, 0}), 5);
}

static void the_decoder_assembles_a_message_fed_one_byte_at_a_time(void **state)
{
  (void)state;
  size_t n;
  cleanup_free uint8_t *f = tr_grpc_frame((const uint8_t *)"hello", 5, &n);
  struct tr_grpc_decoder d;
  tr_grpc_decoder_init(&d);
  assert_false(tr_grpc_decoder_pending(&d));
  for (size_t i = 0; i + 1 < n; i++) {
    feed_ok(&d, f + i, 1);
    expect_nothing(&d);
    assert_true(tr_grpc_decoder_pending(&d));
  }
  feed_ok(&d, f + n - 1, 1);
  expect_next(&d, "hello", 5);
  expect_nothing(&d);
  assert_false(tr_grpc_decoder_pending(&d));
  tr_grpc_decoder_free(&d);
}

static void the_decoder_takes_a_message_in_one_piece(void **state)
{
  (void)state;
  size_t n;
  cleanup_free uint8_t *f = tr_grpc_frame((const uint8_t *)"hello", 5, &n);
  struct tr_grpc_decoder d;
  tr_grpc_decoder_init(&d);
  feed_ok(&d, f, n);
  expect_next(&d, "hello", 5);
  expect_nothing(&d);
  assert_false(tr_grpc_decoder_pending(&d));
  tr_grpc_decoder_free(&d);
}

static void the_decoder_separates_two_messages_in_one_piece(void **state)
{
  (void)state;
  size_t n1, n2, n3;
  cleanup_free uint8_t *f1 = tr_grpc_frame((const uint8_t *)"first", 5, &n1);
  cleanup_free uint8_t *f2 = tr_grpc_frame(NULL, 0, &n2);
  cleanup_free uint8_t *f3 = tr_grpc_frame((const uint8_t *)"third!", 6, &n3);
  cleanup_free uint8_t *all = xmalloc(n1 + n2 + n3);
  memcpy(all, f1, n1);
  memcpy(all + n1, f2, n2);
  memcpy(all + n1 + n2, f3, n3);
  struct tr_grpc_decoder d;
  tr_grpc_decoder_init(&d);
  feed_ok(&d, all, n1 + n2 + n3);
  expect_next(&d, "first", 5);
  expect_next(&d, "", 0);
  expect_next(&d, "third!", 6);
  expect_nothing(&d);
  assert_false(tr_grpc_decoder_pending(&d));
  tr_grpc_decoder_free(&d);
}

static void the_decoder_keeps_the_start_of_the_next_message(void **state)
{
  (void)state;
  size_t n1, n2;
  cleanup_free uint8_t *f1 = tr_grpc_frame((const uint8_t *)"first", 5, &n1);
  cleanup_free uint8_t *f2 = tr_grpc_frame((const uint8_t *)"second", 6, &n2);
  cleanup_free uint8_t *all = xmalloc(n1 + n2);
  memcpy(all, f1, n1);
  memcpy(all + n1, f2, n2);
  struct tr_grpc_decoder d;
  tr_grpc_decoder_init(&d);
  feed_ok(&d, all, n1 + 7); /* the first, and the prefix and two bytes of the second */
  expect_next(&d, "first", 5);
  expect_nothing(&d);
  assert_true(tr_grpc_decoder_pending(&d));
  feed_ok(&d, all + n1 + 7, n2 - 7);
  expect_next(&d, "second", 6);
  assert_false(tr_grpc_decoder_pending(&d));
  tr_grpc_decoder_free(&d);
}

static void a_truncated_frame_stays_pending_and_yields_nothing(void **state)
{
  (void)state;
  size_t n;
  cleanup_free uint8_t *f = tr_grpc_frame((const uint8_t *)"hello", 5, &n);
  struct tr_grpc_decoder d;
  tr_grpc_decoder_init(&d);
  feed_ok(&d, f, 3); /* inside the prefix */
  expect_nothing(&d);
  assert_true(tr_grpc_decoder_pending(&d));
  tr_grpc_decoder_free(&d);

  tr_grpc_decoder_init(&d);
  feed_ok(&d, f, n - 1); /* inside the body */
  expect_nothing(&d);
  assert_true(tr_grpc_decoder_pending(&d));
  tr_grpc_decoder_free(&d);
}

static void a_compressed_message_is_refused(void **state)
{
  (void)state;
  size_t n;
  cleanup_free uint8_t *f = framed(1, 3, "abc", 3, &n);
  struct tr_grpc_decoder d;
  tr_grpc_decoder_init(&d);
  feed_refused(&d, f, n, "compressed");
  tr_grpc_decoder_free(&d);

  /* refused from the prefix alone */
  tr_grpc_decoder_init(&d);
  feed_ok(&d, f, 4);
  feed_refused(&d, f + 4, 1, "compressed");
  tr_grpc_decoder_free(&d);
}

static void a_declared_length_over_the_limit_is_refused_from_the_prefix_alone(void **state)
{
  (void)state;
  size_t n;
  cleanup_free uint8_t *f = framed(0, TR_GRPC_MAX_MESSAGE + 1, "", 0, &n);
  struct tr_grpc_decoder d;
  tr_grpc_decoder_init(&d);
  feed_ok(&d, f, 4);
  feed_refused(&d, f + 4, 1, "a gRPC message of 4194305 bytes (limit 4194304)");
  tr_grpc_decoder_free(&d);

  cleanup_free uint8_t *g = framed(0, 0xffffffffu, "", 0, &n);
  tr_grpc_decoder_init(&d);
  feed_refused(&d, g, n, "a gRPC message of 4294967295 bytes");
  tr_grpc_decoder_free(&d);
}

static void a_declared_length_at_the_limit_is_waited_for(void **state)
{
  (void)state;
  size_t n;
  cleanup_free uint8_t *f = framed(0, TR_GRPC_MAX_MESSAGE, "ab", 2, &n);
  struct tr_grpc_decoder d;
  tr_grpc_decoder_init(&d);
  feed_ok(&d, f, n);
  expect_nothing(&d);
  assert_true(tr_grpc_decoder_pending(&d));
  tr_grpc_decoder_free(&d);
}

static void a_compressed_message_after_a_complete_one_in_the_same_piece_is_refused(void **state)
{
  (void)state;
  size_t n1, n2;
  cleanup_free uint8_t *f1 = tr_grpc_frame((const uint8_t *)"first", 5, &n1);
  cleanup_free uint8_t *f2 = framed(1, 3, "abc", 3, &n2);
  cleanup_free uint8_t *all = xmalloc(n1 + n2);
  memcpy(all, f1, n1);
  memcpy(all + n1, f2, n2);
  struct tr_grpc_decoder d;
  tr_grpc_decoder_init(&d);
  feed_refused(&d, all, n1 + n2, "compressed");
  tr_grpc_decoder_free(&d);
}

static void an_oversized_prefix_after_a_complete_message_in_the_same_piece_is_refused(void **state)
{
  (void)state;
  size_t n1, n2;
  cleanup_free uint8_t *f1 = tr_grpc_frame((const uint8_t *)"first", 5, &n1);
  cleanup_free uint8_t *f2 = framed(0, TR_GRPC_MAX_MESSAGE + 1, "", 0, &n2);
  cleanup_free uint8_t *all = xmalloc(n1 + n2);
  memcpy(all, f1, n1);
  memcpy(all + n1, f2, n2);
  struct tr_grpc_decoder d;
  tr_grpc_decoder_init(&d);
  feed_refused(&d, all, n1 + n2, "a gRPC message of 4194305 bytes");
  tr_grpc_decoder_free(&d);
}

static void an_empty_piece_before_any_data_changes_nothing(void **state)
{
  (void)state;
  struct tr_grpc_decoder d;
  tr_grpc_decoder_init(&d);
  feed_ok(&d, (const uint8_t *)"", 0);
  expect_nothing(&d);
  assert_false(tr_grpc_decoder_pending(&d));
  tr_grpc_decoder_free(&d);
}

static void grpc_status_is_a_decimal_code(void **state)
{
  (void)state;
  assert_int_equal(tr_grpc_parse_status("0", 1), TR_GRPC_OK);
  assert_int_equal(tr_grpc_parse_status("14", 2), TR_GRPC_UNAVAILABLE);
  assert_int_equal(tr_grpc_parse_status("1", 1), TR_GRPC_CANCELLED);
  /* the length is the header's, not the string's */
  assert_int_equal(tr_grpc_parse_status("14xyz", 2), 14);
}

static void a_malformed_grpc_status_is_minus_one(void **state)
{
  (void)state;
  assert_int_equal(tr_grpc_parse_status("", 0), -1);
  assert_int_equal(tr_grpc_parse_status("x", 1), -1);
  assert_int_equal(tr_grpc_parse_status("1234", 4), -1);
  assert_int_equal(tr_grpc_parse_status("-1", 2), -1);
  assert_int_equal(tr_grpc_parse_status(" 1", 2), -1);
  assert_int_equal(tr_grpc_parse_status("1x", 2), -1);
}

static void expect_message(const char *encoded, const char *decoded)
{
  cleanup_free char *m = tr_grpc_decode_message(encoded, strlen(encoded));
  assert_string_equal(m, decoded);
}

static void grpc_message_is_percent_decoded(void **state)
{
  (void)state;
  expect_message("a%20b", "a b");
  expect_message("100%25%2Fdone", "100%/done");
  expect_message("%7e%7E", "~~");
  expect_message("", "");
  expect_message("plain text", "plain text");
}

static void a_bad_escape_is_kept_literally(void **state)
{
  (void)state;
  expect_message("%zz", "%zz");
  expect_message("a%2", "a%2");
  expect_message("%g0x", "%g0x");
}

static void a_percent_at_the_end_is_kept(void **state)
{
  (void)state;
  expect_message("100%", "100%");
  expect_message("%", "%");
}

static void control_characters_are_replaced(void **state)
{
  (void)state;
  expect_message("a%0Ab", "a?b");
  expect_message("a\nb\tc", "a?b?c");
  expect_message("%1b[31mred", "?[31mred");
  expect_message("%7F%C3%A9", "???");
}

static void a_long_grpc_message_is_cut(void **state)
{
  (void)state;
  cleanup_free char *in = xmalloc(5000);
  memset(in, 'x', 5000);
  cleanup_free char *m = tr_grpc_decode_message(in, 5000);
  assert_int_equal(strlen(m), 1024);
}

static void expect_timeout(int64_t ms, const char *want)
{
  char buf[16];
  tr_grpc_timeout_header(ms, buf, sizeof buf);
  assert_string_equal(buf, want);
}

static void grpc_timeout_is_in_milliseconds(void **state)
{
  (void)state;
  expect_timeout(250, "250m");
  expect_timeout(3000, "3000m");
  expect_timeout(1, "1m");
}

static void a_zero_or_negative_timeout_becomes_one_millisecond(void **state)
{
  (void)state;
  expect_timeout(0, "1m");
  expect_timeout(-1, "1m");
  expect_timeout(INT64_MIN, "1m");
}

static void a_huge_timeout_is_capped_to_eight_digits(void **state)
{
  (void)state;
  expect_timeout(99999999, "99999999m");
  expect_timeout(100000000, "99999999m");
  expect_timeout(INT64_MAX, "99999999m");
}

static void code_names_follow_grpc_numbering(void **state)
{
  (void)state;
  assert_string_equal(tr_grpc_code_name(TR_GRPC_OK), "OK");
  assert_string_equal(tr_grpc_code_name(TR_GRPC_CANCELLED), "CANCELLED");
  assert_string_equal(tr_grpc_code_name(TR_GRPC_DEADLINE_EXCEEDED), "DEADLINE_EXCEEDED");
  assert_string_equal(tr_grpc_code_name(TR_GRPC_FAILED_PRECONDITION), "FAILED_PRECONDITION");
  assert_string_equal(tr_grpc_code_name(TR_GRPC_UNIMPLEMENTED), "UNIMPLEMENTED");
  assert_string_equal(tr_grpc_code_name(TR_GRPC_UNAVAILABLE), "UNAVAILABLE");
  assert_string_equal(tr_grpc_code_name(16), "UNAUTHENTICATED");
}

static void out_of_range_codes_have_a_name_too(void **state)
{
  (void)state;
  assert_string_equal(tr_grpc_code_name(17), "UNKNOWN_CODE");
  assert_string_equal(tr_grpc_code_name(-1), "UNKNOWN_CODE");
  assert_string_equal(tr_grpc_code_name(999), "UNKNOWN_CODE");
}

int main(void)
{
  const struct CMUnitTest tests[] = {
      cmocka_unit_test(a_frame_is_the_message_behind_a_five_byte_prefix),
      cmocka_unit_test(an_empty_message_is_a_bare_prefix),
      cmocka_unit_test(the_decoder_assembles_a_message_fed_one_byte_at_a_time),
      cmocka_unit_test(the_decoder_takes_a_message_in_one_piece),
      cmocka_unit_test(the_decoder_separates_two_messages_in_one_piece),
      cmocka_unit_test(the_decoder_keeps_the_start_of_the_next_message),
      cmocka_unit_test(a_truncated_frame_stays_pending_and_yields_nothing),
      cmocka_unit_test(a_compressed_message_is_refused),
      cmocka_unit_test(a_declared_length_over_the_limit_is_refused_from_the_prefix_alone),
      cmocka_unit_test(a_declared_length_at_the_limit_is_waited_for),
      cmocka_unit_test(grpc_status_is_a_decimal_code),
      cmocka_unit_test(a_malformed_grpc_status_is_minus_one),
      cmocka_unit_test(grpc_message_is_percent_decoded),
      cmocka_unit_test(a_bad_escape_is_kept_literally),
      cmocka_unit_test(a_percent_at_the_end_is_kept),
      cmocka_unit_test(control_characters_are_replaced),
      cmocka_unit_test(a_long_grpc_message_is_cut),
      cmocka_unit_test(grpc_timeout_is_in_milliseconds),
      cmocka_unit_test(a_zero_or_negative_timeout_becomes_one_millisecond),
      cmocka_unit_test(a_huge_timeout_is_capped_to_eight_digits),
      cmocka_unit_test(code_names_follow_grpc_numbering),
      cmocka_unit_test(out_of_range_codes_have_a_name_too),
      cmocka_unit_test(a_compressed_message_after_a_complete_one_in_the_same_piece_is_refused),
      cmocka_unit_test(an_oversized_prefix_after_a_complete_message_in_the_same_piece_is_refused),
      cmocka_unit_test(an_empty_piece_before_any_data_changes_nothing),
  };
  return cmocka_run_group_tests(tests, NULL, NULL);
}
