/* Addresses and prefixes between Docker's text and the daemon's bytes (Go's netip binary form), and
 * the overlap check that keeps a daemon route from shadowing a network's own pool. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>

#include <cmocka.h>

#include "plg_util.h"
#include "tr_addr.h"

#include <arpa/inet.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>

/* A prefix parsed from TEXT, which must be valid. */
static struct tr_prefix pfx(const char *text)
{
  struct tr_prefix p;
  plg_error_t err = NULL;
  if (tr_prefix_parse(text, &p, &err) < 0)
    fail_msg("\"%s\" was refused: %s", text, err->msg);
  return p;
}

static void expect_text(const struct tr_prefix *p, bool host_only, const char *want)
{
  char buf[64];
  tr_prefix_format(p, host_only, buf, sizeof buf);
  assert_string_equal(buf, want);
}

/* The error of a refused conversion (malloc'd). */
static char *addr_error(const uint8_t *b, size_t n, bool prefix)
{
  struct tr_prefix p;
  plg_error_t err = NULL;
  int rc = prefix ? tr_prefix_from_bytes(b, n, &p, &err) : tr_addr_from_bytes(b, n, &p, &err);
  if (rc == 0)
    fail_msg("%zu bytes were accepted as %s", n, prefix ? "a prefix" : "an address");
  assert_int_equal(rc, -1);
  assert_non_null(err);
  char *msg = xstrdup(err->msg);
  plg_error_release(&err);
  return msg;
}

static void expect_refused_text(const char *text, const char *needle)
{
  struct tr_prefix p;
  plg_error_t err = NULL;
  if (tr_prefix_parse(text, &p, &err) == 0)
    fail_msg("\"%s\" was accepted", text);
  assert_non_null(err);
  assert_int_equal(err->status, 400);
  if (strstr(err->msg, needle) == NULL)
    fail_msg("error \"%s\" for \"%s\" does not contain \"%s\"", err->msg, text, needle);
  plg_error_release(&err);
}

static void an_ipv4_address_is_4_bytes_both_ways(void **state)
{
  (void)state;
  const uint8_t in[4] = {172, 18, 0, 2};
  struct tr_prefix p;
  plg_error_t err = NULL;
  assert_int_equal(tr_addr_from_bytes(in, sizeof in, &p, &err), 0);
  assert_int_equal(p.family, AF_INET);
  assert_int_equal(p.len, 32);
  expect_text(&p, true, "172.18.0.2");
  uint8_t out[17];
  assert_int_equal(tr_addr_to_bytes(&p, out), 4);
  assert_memory_equal(out, in, 4);
}

static void an_ipv6_address_is_16_bytes_both_ways(void **state)
{
  (void)state;
  uint8_t in[16];
  assert_int_equal(inet_pton(AF_INET6, "fd00:1::2", in), 1);
  struct tr_prefix p;
  plg_error_t err = NULL;
  assert_int_equal(tr_addr_from_bytes(in, sizeof in, &p, &err), 0);
  assert_int_equal(p.family, AF_INET6);
  assert_int_equal(p.len, 128);
  expect_text(&p, true, "fd00:1::2");
  uint8_t out[17];
  assert_int_equal(tr_addr_to_bytes(&p, out), 16);
  assert_memory_equal(out, in, 16);
}

static void an_ipv4_prefix_is_5_bytes_both_ways(void **state)
{
  (void)state;
  const uint8_t in[5] = {10, 96, 0, 0, 12};
  struct tr_prefix p;
  plg_error_t err = NULL;
  assert_int_equal(tr_prefix_from_bytes(in, sizeof in, &p, &err), 0);
  assert_int_equal(p.family, AF_INET);
  assert_int_equal(p.len, 12);
  expect_text(&p, false, "10.96.0.0/12");
  uint8_t out[17];
  assert_int_equal(tr_prefix_to_bytes(&p, out), 5);
  assert_memory_equal(out, in, 5);
}

static void an_ipv6_prefix_is_17_bytes_both_ways(void **state)
{
  (void)state;
  uint8_t in[17];
  assert_int_equal(inet_pton(AF_INET6, "fd00:2::", in), 1);
  in[16] = 64;
  struct tr_prefix p;
  plg_error_t err = NULL;
  assert_int_equal(tr_prefix_from_bytes(in, sizeof in, &p, &err), 0);
  assert_int_equal(p.family, AF_INET6);
  assert_int_equal(p.len, 64);
  expect_text(&p, false, "fd00:2::/64");
  uint8_t out[17];
  assert_int_equal(tr_prefix_to_bytes(&p, out), 17);
  assert_memory_equal(out, in, 17);
}

static void text_converts_to_the_same_bytes_as_the_daemon_sends(void **state)
{
  (void)state;
  uint8_t out[17];
  struct tr_prefix p = pfx("172.18.0.1/16");
  assert_int_equal(tr_prefix_to_bytes(&p, out), 5);
  assert_memory_equal(out, ((const uint8_t[]){172, 18, 0, 1, 16}), 5);
  assert_int_equal(tr_addr_to_bytes(&p, out), 4);
  assert_memory_equal(out, ((const uint8_t[]){172, 18, 0, 1}), 4);
  p = pfx("::/0");
  assert_int_equal(tr_prefix_to_bytes(&p, out), 17);
  assert_memory_equal(out, ((const uint8_t[17]){0}), 17);
}

static void empty_bytes_mean_none(void **state)
{
  (void)state;
  struct tr_prefix p;
  plg_error_t err = NULL;
  memset(&p, 0xaa, sizeof p);
  assert_int_equal(tr_addr_from_bytes(NULL, 0, &p, &err), 0);
  assert_int_equal(p.family, 0);
  memset(&p, 0xaa, sizeof p);
  assert_int_equal(tr_prefix_from_bytes(NULL, 0, &p, &err), 0);
  assert_int_equal(p.family, 0);
  assert_null(err);
  uint8_t out[17];
  assert_int_equal(tr_addr_to_bytes(&p, out), 0);
  assert_int_equal(tr_prefix_to_bytes(&p, out), 0);
}

static void addresses_of_a_wrong_length_are_refused(void **state)
{
  (void)state;
  const uint8_t b[18] = {10, 0, 0, 1};
  const size_t bad[] = {1, 3, 5, 15, 17};
  for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++) {
    cleanup_free char *msg = addr_error(b, bad[i], false);
    cleanup_free char *want = xasprintf("an address of %zu bytes (expected 4 or 16)", bad[i]);
    assert_string_equal(msg, want);
  }
}

static void prefixes_of_a_wrong_length_are_refused(void **state)
{
  (void)state;
  const uint8_t b[18] = {10, 0, 0, 1, 8};
  const size_t bad[] = {1, 4, 6, 16, 18};
  for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++) {
    cleanup_free char *msg = addr_error(b, bad[i], true);
    cleanup_free char *want = xasprintf("a prefix of %zu bytes (expected 5 or 17)", bad[i]);
    assert_string_equal(msg, want);
  }
}

static void a_prefix_length_beyond_the_family_is_refused(void **state)
{
  (void)state;
  uint8_t v4[5] = {10, 0, 0, 0, 33};
  cleanup_free char *m4 = addr_error(v4, sizeof v4, true);
  assert_non_null(strstr(m4, "a prefix length of 33"));
  uint8_t v6[17] = {0xfd};
  v6[16] = 129;
  cleanup_free char *m6 = addr_error(v6, sizeof v6, true);
  assert_non_null(strstr(m6, "a prefix length of 129"));
  v4[4] = 255;
  cleanup_free char *m255 = addr_error(v4, sizeof v4, true);
  assert_non_null(strstr(m255, "a prefix length of 255"));
}

static void prefix_lengths_at_the_bounds_of_the_family_are_accepted(void **state)
{
  (void)state;
  struct tr_prefix p;
  plg_error_t err = NULL;
  const uint8_t v4_32[5] = {10, 0, 0, 1, 32}, v4_0[5] = {0, 0, 0, 0, 0};
  assert_int_equal(tr_prefix_from_bytes(v4_32, 5, &p, &err), 0);
  assert_int_equal(p.len, 32);
  assert_int_equal(tr_prefix_from_bytes(v4_0, 5, &p, &err), 0);
  assert_int_equal(p.len, 0);
  uint8_t v6[17] = {0xfd};
  v6[16] = 128;
  assert_int_equal(tr_prefix_from_bytes(v6, 17, &p, &err), 0);
  assert_int_equal(p.len, 128);
  assert_null(err);
}

static void text_without_a_length_is_a_host(void **state)
{
  (void)state;
  struct tr_prefix p = pfx("172.18.0.2");
  assert_int_equal(p.family, AF_INET);
  assert_int_equal(p.len, 32);
  expect_text(&p, false, "172.18.0.2/32");
  p = pfx("fd00:1::2");
  assert_int_equal(p.family, AF_INET6);
  assert_int_equal(p.len, 128);
  expect_text(&p, false, "fd00:1::2/128");
}

static void text_with_a_length_keeps_it(void **state)
{
  (void)state;
  struct tr_prefix p = pfx("172.18.0.2/16");
  assert_int_equal(p.family, AF_INET);
  assert_int_equal(p.len, 16);
  expect_text(&p, false, "172.18.0.2/16");
  expect_text(&p, true, "172.18.0.2");
  p = pfx("FD00:0001:0::2/64");
  assert_int_equal(p.family, AF_INET6);
  assert_int_equal(p.len, 64);
  expect_text(&p, false, "fd00:1::2/64");
  expect_text(&p, true, "fd00:1::2");
  p = pfx("0.0.0.0/0");
  assert_int_equal(p.len, 0);
  p = pfx("10.0.0.1/32");
  assert_int_equal(p.len, 32);
  p = pfx("::/128");
  assert_int_equal(p.len, 128);
}

static void bad_lengths_in_text_are_refused(void **state)
{
  (void)state;
  expect_refused_text("10.0.0.0/", "has a bad prefix length");
  expect_refused_text("10.0.0.0/33", "has a bad prefix length");
  expect_refused_text("10.0.0.0/x", "has a bad prefix length");
  expect_refused_text("10.0.0.0/8x", "has a bad prefix length");
  expect_refused_text("10.0.0.0/8/8", "has a bad prefix length");
  expect_refused_text("10.0.0.0/-1", "has a bad prefix length");
  expect_refused_text("fd00::/129", "has a bad prefix length");
  expect_refused_text("fd00::/", "has a bad prefix length");
}

static void a_length_with_a_sign_or_a_blank_is_refused(void **state)
{
  (void)state;
  expect_refused_text("10.0.0.0/ 8", "has a bad prefix length");
  expect_refused_text("10.0.0.0/+8", "has a bad prefix length");
  expect_refused_text("10.0.0.0/-0", "has a bad prefix length");
}

static void text_that_is_not_an_address_is_refused(void **state)
{
  (void)state;
  expect_refused_text("", "is not an IP address or prefix");
  expect_refused_text("/8", "is not an IP address or prefix");
  expect_refused_text("localhost/8", "is not an IP address or prefix");
  expect_refused_text("10.0.0/8", "is not an IP address or prefix");
  expect_refused_text("1111111111111111111111111111111111111111111111111111111111111111.1.1.1",
                      "is not an IP address or prefix");
}

static void the_same_prefix_overlaps_itself(void **state)
{
  (void)state;
  struct tr_prefix a = pfx("172.18.0.0/16"), b = pfx("172.18.0.0/16");
  assert_true(tr_prefix_overlaps(&a, &b));
  struct tr_prefix c = pfx("fd00:1::/64"), d = pfx("fd00:1::/64");
  assert_true(tr_prefix_overlaps(&c, &d));
  struct tr_prefix h = pfx("10.0.0.1");
  assert_true(tr_prefix_overlaps(&h, &h));
}

static void nested_prefixes_overlap_both_ways(void **state)
{
  (void)state;
  struct tr_prefix wide = pfx("172.16.0.0/12"), narrow = pfx("172.18.5.0/24");
  assert_true(tr_prefix_overlaps(&wide, &narrow));
  assert_true(tr_prefix_overlaps(&narrow, &wide));
  /* a length that is not a whole number of bytes */
  struct tr_prefix nine = pfx("10.0.0.0/9"), inside = pfx("10.127.255.0/24");
  assert_true(tr_prefix_overlaps(&nine, &inside));
  assert_true(tr_prefix_overlaps(&inside, &nine));
  struct tr_prefix w6 = pfx("fd00::/8"), n6 = pfx("fd00:1:2::/48");
  assert_true(tr_prefix_overlaps(&w6, &n6));
  assert_true(tr_prefix_overlaps(&n6, &w6));
  /* host bits beyond the length do not matter */
  struct tr_prefix gw = pfx("172.18.0.1/16"), host = pfx("172.18.200.7");
  assert_true(tr_prefix_overlaps(&gw, &host));
  assert_true(tr_prefix_overlaps(&host, &gw));
}

static void disjoint_prefixes_do_not_overlap(void **state)
{
  (void)state;
  struct tr_prefix a = pfx("172.18.0.0/16"), b = pfx("172.19.0.0/16");
  assert_false(tr_prefix_overlaps(&a, &b));
  assert_false(tr_prefix_overlaps(&b, &a));
  struct tr_prefix lo = pfx("10.0.0.0/9"), hi = pfx("10.128.0.0/9");
  assert_false(tr_prefix_overlaps(&lo, &hi));
  assert_false(tr_prefix_overlaps(&hi, &lo));
  struct tr_prefix c = pfx("fd00:1::/64"), d = pfx("fd00:2::/64");
  assert_false(tr_prefix_overlaps(&c, &d));
  struct tr_prefix h1 = pfx("10.0.0.1"), h2 = pfx("10.0.0.2");
  assert_false(tr_prefix_overlaps(&h1, &h2));
}

static void prefixes_of_different_families_do_not_overlap(void **state)
{
  (void)state;
  /* the same leading bytes (all zeros) in both families */
  struct tr_prefix v4 = pfx("0.0.0.0/8"), v6 = pfx("::/8");
  assert_false(tr_prefix_overlaps(&v4, &v6));
  assert_false(tr_prefix_overlaps(&v6, &v4));
  struct tr_prefix all4 = pfx("0.0.0.0/0"), all6 = pfx("::/0");
  assert_false(tr_prefix_overlaps(&all4, &all6));
}

static void a_zero_length_prefix_overlaps_its_whole_family(void **state)
{
  (void)state;
  struct tr_prefix all4 = pfx("0.0.0.0/0"), any4 = pfx("203.0.113.9/32");
  assert_true(tr_prefix_overlaps(&all4, &any4));
  assert_true(tr_prefix_overlaps(&any4, &all4));
  struct tr_prefix all6 = pfx("::/0"), any6 = pfx("2001:db8::/32");
  assert_true(tr_prefix_overlaps(&all6, &any6));
  assert_true(tr_prefix_overlaps(&any6, &all6));
}

static void no_prefix_overlaps_nothing(void **state)
{
  (void)state;
  struct tr_prefix none, all4 = pfx("0.0.0.0/0");
  memset(&none, 0, sizeof none);
  assert_false(tr_prefix_overlaps(&none, &none));
  assert_false(tr_prefix_overlaps(&none, &all4));
  assert_false(tr_prefix_overlaps(&all4, &none));
}

int main(void)
{
  const struct CMUnitTest tests[] = {
      cmocka_unit_test(an_ipv4_address_is_4_bytes_both_ways),
      cmocka_unit_test(an_ipv6_address_is_16_bytes_both_ways),
      cmocka_unit_test(an_ipv4_prefix_is_5_bytes_both_ways),
      cmocka_unit_test(an_ipv6_prefix_is_17_bytes_both_ways),
      cmocka_unit_test(text_converts_to_the_same_bytes_as_the_daemon_sends),
      cmocka_unit_test(empty_bytes_mean_none),
      cmocka_unit_test(addresses_of_a_wrong_length_are_refused),
      cmocka_unit_test(prefixes_of_a_wrong_length_are_refused),
      cmocka_unit_test(a_prefix_length_beyond_the_family_is_refused),
      cmocka_unit_test(prefix_lengths_at_the_bounds_of_the_family_are_accepted),
      cmocka_unit_test(text_without_a_length_is_a_host),
      cmocka_unit_test(text_with_a_length_keeps_it),
      cmocka_unit_test(bad_lengths_in_text_are_refused),
      cmocka_unit_test(text_that_is_not_an_address_is_refused),
      cmocka_unit_test(the_same_prefix_overlaps_itself),
      cmocka_unit_test(nested_prefixes_overlap_both_ways),
      cmocka_unit_test(disjoint_prefixes_do_not_overlap),
      cmocka_unit_test(prefixes_of_different_families_do_not_overlap),
      cmocka_unit_test(a_zero_length_prefix_overlaps_its_whole_family),
      cmocka_unit_test(no_prefix_overlaps_nothing),
      cmocka_unit_test(a_length_with_a_sign_or_a_blank_is_refused),
  };
  return cmocka_run_group_tests(tests, NULL, NULL);
}
