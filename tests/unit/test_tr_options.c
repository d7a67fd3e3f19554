/* teleroute's network options (`docker network create -o host=... -o port=... -o pid=...`): every
 * accepted form, and every rejection naming the option at fault. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>

#include <cmocka.h>

#include "plg_json.h"
#include "plg_util.h"
#include "tr_options.h"

#include <stdlib.h>
#include <string.h>

/* Parses OPTS (JSON text, or NULL for no option map); returns the error message (malloc'd) or
 * NULL on success. Every rejection is a bad request. */
static char *parse(const char *opts_json, struct tr_net_opts *o)
{
  cleanup_json json_t *opts = opts_json != NULL ? json_loads(opts_json, 0, NULL) : NULL;
  if (opts_json != NULL)
    assert_non_null(opts);
  plg_error_t err = NULL;
  if (tr_net_opts_parse(opts, o, &err) == 0) {
    assert_null(err);
    return NULL;
  }
  assert_non_null(err);
  assert_int_equal(err->status, 400);
  char *msg = xstrdup(err->msg);
  plg_error_release(&err);
  return msg;
}

static void expect_rejected(const char *opts_json, const char *needle)
{
  struct tr_net_opts o;
  cleanup_free char *msg = parse(opts_json, &o);
  if (msg == NULL)
    fail_msg("%s was accepted", opts_json ? opts_json : "(null)");
  if (strstr(msg, needle) == NULL)
    fail_msg("error \"%s\" for %s does not contain \"%s\"", msg, opts_json ? opts_json : "(null)", needle);
}

static void expect_host(const char *given, const char *normalised)
{
  struct tr_net_opts o;
  cleanup_free char *j = xasprintf("{\"host\":\"%s\"}", given);
  cleanup_free char *msg = parse(j, &o);
  if (msg != NULL)
    fail_msg("host \"%s\" was refused: %s", given, msg);
  assert_string_equal(o.host, normalised);
}

static void the_host_is_required(void **state)
{
  (void)state;
  expect_rejected(NULL, "option \"host\" is required");
  expect_rejected("{}", "option \"host\" is required");
  expect_rejected("{\"port\":\"4039\",\"pid\":\"12\"}", "option \"host\" is required");
}

static void ipv4_and_ipv6_hosts_are_accepted_and_normalised(void **state)
{
  (void)state;
  expect_host("172.17.0.2", "172.17.0.2");
  expect_host("0.0.0.0", "0.0.0.0");
  expect_host("::1", "::1");
  expect_host("FD00:0:0:0:0:0:0:2", "fd00::2");
  expect_host("2001:db8:0000::00ab", "2001:db8::ab");
}

static void bracketed_ipv6_hosts_are_accepted_without_brackets(void **state)
{
  (void)state;
  expect_host("[::1]", "::1");
  expect_host("[fd00:0::2]", "fd00::2");
}

/* Telepresence's client sends the daemon's IPv4 address as ::ffff:a.b.c.d for an IPv6-only
 * daemon network: `if ipv6 && !ipv4 && host.Is4() { host = netip.AddrFrom16(host.As16()) }`
 * (telepresenceio/telepresence pkg/client/docker/teleroute/network.go, CreateNetwork). It must
 * be dialled as IPv4, which works on hosts booted without IPv6. */
static void ipv4_mapped_hosts_become_the_ipv4_address(void **state)
{
  (void)state;
  expect_host("::ffff:172.17.0.2", "172.17.0.2");
  expect_host("[::ffff:172.17.0.2]", "172.17.0.2");
  expect_host("::FFFF:172.17.0.2", "172.17.0.2");
  expect_host("[::FFFF:AC11:2]", "172.17.0.2");
  expect_host("0:0:0:0:0:ffff:10.0.0.1", "10.0.0.1");
  expect_host("::ffff:0.0.0.0", "0.0.0.0");
}

static void ipv6_addresses_that_merely_contain_ipv4_stay_ipv6(void **state)
{
  (void)state;
  expect_host("::172.17.0.2", "::172.17.0.2");           /* IPv4-compatible (deprecated), not mapped */
  expect_host("64:ff9b::172.17.0.2", "64:ff9b::ac11:2"); /* NAT64 */
  expect_host("::fffe:172.17.0.2", "::fffe:ac11:2");
  expect_host("::1:ffff:172.17.0.2", "::1:ffff:ac11:2");
}

static void names_garbage_and_empty_hosts_are_refused_naming_host(void **state)
{
  (void)state;
  const char *bad[] = {"localhost",
                       "daemon.example.com",
                       "",
                       "1.2.3",
                       "1.2.3.4.5",
                       "256.1.1.1",
                       " 172.17.0.2",
                       "172.17.0.2 ",
                       "172.17.0.2:4039",
                       "172.17.0.0/16",
                       "::g",
                       "fe80::1%eth0",
                       "[::1",
                       "::1]",
                       "[]",
                       "-oProxyCommand=x",
                       "1111111111111111111111111111111111111111111111111111111111111111111111.1.1.1"};
  for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++) {
    cleanup_free char *j = xasprintf("{\"host\":\"%s\"}", bad[i]);
    expect_rejected(j, "option \"host\"");
    expect_rejected(j, "is not an IPv4 or IPv6 address");
  }
}

static void the_port_defaults_to_4039(void **state)
{
  (void)state;
  struct tr_net_opts o;
  assert_null(parse("{\"host\":\"172.17.0.2\"}", &o));
  assert_int_equal(o.port, TR_DEFAULT_PORT);
  assert_int_equal(o.port, 4039);
  assert_int_equal(o.pid, 0);
}

static void ports_1_and_65535_are_accepted(void **state)
{
  (void)state;
  struct tr_net_opts o;
  assert_null(parse("{\"host\":\"172.17.0.2\",\"port\":\"1\"}", &o));
  assert_int_equal(o.port, 1);
  assert_null(parse("{\"host\":\"172.17.0.2\",\"port\":\"65535\"}", &o));
  assert_int_equal(o.port, 65535);
  assert_null(parse("{\"host\":\"172.17.0.2\",\"port\":\"4040\"}", &o));
  assert_int_equal(o.port, 4040);
}

static void bad_ports_are_refused_naming_port(void **state)
{
  (void)state;
  const char *bad[] = {"0",
                       "65536",
                       "-1",
                       "+1",
                       "abc",
                       "",
                       " 80",
                       "80 ",
                       "80a",
                       "0x50",
                       "1e3",
                       "4039.0",
                       "99999999999999999999"};
  for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++) {
    cleanup_free char *j = xasprintf("{\"host\":\"172.17.0.2\",\"port\":\"%s\"}", bad[i]);
    expect_rejected(j, "option \"port\"");
    expect_rejected(j, "is not a port number (1-65535)");
  }
}

static void a_positive_pid_is_accepted(void **state)
{
  (void)state;
  struct tr_net_opts o;
  assert_null(parse("{\"host\":\"172.17.0.2\",\"pid\":\"1\"}", &o));
  assert_int_equal(o.pid, 1);
  assert_null(parse("{\"host\":\"172.17.0.2\",\"pid\":\"123456\"}", &o));
  assert_int_equal(o.pid, 123456);
  assert_int_equal(o.port, 4039);
}

static void a_pid_that_is_not_a_positive_integer_is_refused(void **state)
{
  (void)state;
  const char *bad[] = {"0", "-1", "+5", "abc", "", " 12", "12x", "1.5", "0x10", "99999999999999999999"};
  for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++) {
    cleanup_free char *j = xasprintf("{\"host\":\"172.17.0.2\",\"pid\":\"%s\"}", bad[i]);
    expect_rejected(j, "option \"pid\"");
    expect_rejected(j, "is not a process id");
  }
}

static void unknown_options_are_refused_by_name(void **state)
{
  (void)state;
  expect_rejected("{\"host\":\"172.17.0.2\",\"hostname\":\"x\"}", "unknown option \"hostname\"");
  expect_rejected("{\"host\":\"172.17.0.2\",\"Host\":\"172.17.0.3\"}", "unknown option \"Host\"");
  expect_rejected("{\"host\":\"172.17.0.2\",\"daemon\":\"true\"}", "unknown option \"daemon\"");
  expect_rejected("{\"host\":\"172.17.0.2\",\"daemon\":\"true\"}", "valid options: host, port, pid");
}

static void a_value_that_is_not_a_string_is_refused(void **state)
{
  (void)state;
  expect_rejected("{\"host\":\"172.17.0.2\",\"port\":4039}", "option \"port\" must be a string");
  expect_rejected("{\"host\":null}", "option \"host\" must be a string");
  expect_rejected("{\"host\":\"172.17.0.2\",\"pid\":[1]}", "option \"pid\" must be a string");
  expect_rejected("{\"host\":\"172.17.0.2\",\"x\":true}", "option \"x\" must be a string");
}

static void all_three_options_together_are_accepted(void **state)
{
  (void)state;
  struct tr_net_opts o;
  assert_null(parse("{\"host\":\"[fd00::2]\",\"port\":\"34039\",\"pid\":\"4242\"}", &o));
  assert_string_equal(o.host, "fd00::2");
  assert_int_equal(o.port, 34039);
  assert_int_equal(o.pid, 4242);
}

int main(void)
{
  const struct CMUnitTest tests[] = {
      cmocka_unit_test(the_host_is_required),
      cmocka_unit_test(ipv4_and_ipv6_hosts_are_accepted_and_normalised),
      cmocka_unit_test(bracketed_ipv6_hosts_are_accepted_without_brackets),
      cmocka_unit_test(ipv4_mapped_hosts_become_the_ipv4_address),
      cmocka_unit_test(ipv6_addresses_that_merely_contain_ipv4_stay_ipv6),
      cmocka_unit_test(names_garbage_and_empty_hosts_are_refused_naming_host),
      cmocka_unit_test(the_port_defaults_to_4039),
      cmocka_unit_test(ports_1_and_65535_are_accepted),
      cmocka_unit_test(bad_ports_are_refused_naming_port),
      cmocka_unit_test(a_positive_pid_is_accepted),
      cmocka_unit_test(a_pid_that_is_not_a_positive_integer_is_refused),
      cmocka_unit_test(unknown_options_are_refused_by_name),
      cmocka_unit_test(a_value_that_is_not_a_string_is_refused),
      cmocka_unit_test(all_three_options_together_are_accepted),
  };
  return cmocka_run_group_tests(tests, NULL, NULL);
}
