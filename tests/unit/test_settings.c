/* Typed settings: the spellings accepted, every rejection, and messages naming the variable. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>

#include <cmocka.h>

#include "plg_settings.h"

#include <stdlib.h>
#include <string.h>

static int64_t duration(const char *s)
{
  int64_t ms = -1;
  plg_error_t err = NULL;
  if (plg_parse_duration_ms(s, 86400000, &ms, &err) < 0) {
    plg_error_release(&err);
    return -1;
  }
  return ms;
}

static void durations_in_go_syntax_are_read_as_milliseconds(void **state)
{
  (void)state;
  assert_int_equal(duration("5s"), 5000);
  assert_int_equal(duration("250ms"), 250);
  assert_int_equal(duration("1m30s"), 90000);
  assert_int_equal(duration("1.5s"), 1500);
  assert_int_equal(duration("2h"), 7200000);
  assert_int_equal(duration("0"), 0);
  assert_int_equal(duration("0s"), 0);
  assert_int_equal(duration("1500us"), 1);
}

static void malformed_durations_are_rejected(void **state)
{
  (void)state;
  const char *bad[] = {"",    "5",    "s",   "-1s", "+1s",   "1e3s", "0x10s",
                       "5 s", "5sec", "inf", "nan", "1..5s", "5s5"};
  for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++)
    if (duration(bad[i]) != -1)
      fail_msg("\"%s\" was accepted", bad[i]);
}

static void a_duration_over_the_maximum_is_rejected(void **state)
{
  (void)state;
  int64_t ms;
  plg_error_t err = NULL;
  assert_int_equal(plg_parse_duration_ms("2m", 60000, &ms, &err), -1);
  assert_non_null(strstr(err->msg, "maximum"));
  plg_error_release(&err);
  assert_int_equal(duration("99999999999999999999h"), -1);
}

static void booleans_take_the_usual_spellings(void **state)
{
  (void)state;
  const char *yes[] = {"true", "1", "TRUE", "True", "t", "yes", "on"};
  const char *no[] = {"false", "0", "FALSE", "f", "no", "off"};
  plg_error_t err = NULL;
  bool v;
  for (size_t i = 0; i < sizeof yes / sizeof yes[0]; i++) {
    assert_int_equal(plg_parse_bool(yes[i], &v, &err), 0);
    assert_true(v);
  }
  for (size_t i = 0; i < sizeof no / sizeof no[0]; i++) {
    assert_int_equal(plg_parse_bool(no[i], &v, &err), 0);
    assert_false(v);
  }
  assert_int_equal(plg_parse_bool("maybe", &v, &err), -1);
  assert_non_null(strstr(err->msg, "\"maybe\" is not a boolean"));
  plg_error_release(&err);
}

static void integers_are_checked_against_their_bounds(void **state)
{
  (void)state;
  int64_t v;
  plg_error_t err = NULL;
  assert_int_equal(plg_parse_int("65535", 1, 65535, &v, &err), 0);
  assert_int_equal(v, 65535);
  assert_int_equal(plg_parse_int("65536", 1, 65535, &v, &err), -1);
  assert_non_null(strstr(err->msg, "out of range (1-65535)"));
  plg_error_release(&err);
  const char *bad[] = {"", "-", "12a", " 1", "1 ", "0x10", "99999999999999999999999"};
  for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++) {
    if (plg_parse_int(bad[i], INT64_MIN, INT64_MAX, &v, &err) != -1)
      fail_msg("\"%s\" was accepted", bad[i]);
    plg_error_release(&err);
  }
}

static void ports_are_digits_from_1_to_65535_and_errors_name_the_option(void **state)
{
  (void)state;
  int port = 0;
  plg_error_t err = NULL;
  assert_int_equal(plg_parse_port("port", "4039", &port, &err), 0);
  assert_int_equal(port, 4039);
  const char *bad[] = {"0", "65536", "+22", "-1", "22a", "", " 22", "99999999999999999999"};
  for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++) {
    assert_int_equal(plg_parse_port("port", bad[i], &port, &err), -1);
    assert_non_null(strstr(err->msg, "option \"port\""));
    assert_non_null(strstr(err->msg, "is not a port number (1-65535)"));
    plg_error_release(&err);
  }
}

static void a_bad_environment_value_names_the_variable(void **state)
{
  (void)state;
  plg_error_t err = NULL;
  int64_t ms;
  setenv("PLG_TEST_LINGER", "5 seconds", 1);
  assert_int_equal(plg_setting_duration_ms("PLG_TEST_LINGER", 5000, 3600000, &ms, &err), -1);
  assert_non_null(strstr(err->msg, "setting PLG_TEST_LINGER: \"5 seconds\""));
  plg_error_release(&err);
  setenv("PLG_TEST_DEBUG", "yes please", 1);
  bool b;
  assert_int_equal(plg_setting_bool("PLG_TEST_DEBUG", false, &b, &err), -1);
  assert_non_null(strstr(err->msg, "setting PLG_TEST_DEBUG"));
  plg_error_release(&err);
  setenv("PLG_TEST_N", "0", 1);
  int64_t n;
  assert_int_equal(plg_setting_int("PLG_TEST_N", 4, 1, 8, &n, &err), -1);
  assert_non_null(strstr(err->msg, "setting PLG_TEST_N"));
  plg_error_release(&err);
}

static void unset_or_empty_variables_give_the_default(void **state)
{
  (void)state;
  plg_error_t err = NULL;
  int64_t ms;
  unsetenv("PLG_TEST_UNSET");
  assert_int_equal(plg_setting_duration_ms("PLG_TEST_UNSET", 1234, 3600000, &ms, &err), 0);
  assert_int_equal(ms, 1234);
  setenv("PLG_TEST_EMPTY", "", 1);
  bool b = false;
  assert_int_equal(plg_setting_bool("PLG_TEST_EMPTY", true, &b, &err), 0);
  assert_true(b);
  assert_string_equal(plg_setting_string("PLG_TEST_UNSET", "dflt"), "dflt");
  setenv("PLG_TEST_STR", "/var/log/x.log", 1);
  assert_string_equal(plg_setting_string("PLG_TEST_STR", NULL), "/var/log/x.log");
}

int main(void)
{
  const struct CMUnitTest tests[] = {
      cmocka_unit_test(durations_in_go_syntax_are_read_as_milliseconds),
      cmocka_unit_test(malformed_durations_are_rejected),
      cmocka_unit_test(a_duration_over_the_maximum_is_rejected),
      cmocka_unit_test(booleans_take_the_usual_spellings),
      cmocka_unit_test(integers_are_checked_against_their_bounds),
      cmocka_unit_test(ports_are_digits_from_1_to_65535_and_errors_name_the_option),
      cmocka_unit_test(a_bad_environment_value_names_the_variable),
      cmocka_unit_test(unset_or_empty_variables_give_the_default),
  };
  return cmocka_run_group_tests(tests, NULL, NULL);
}
