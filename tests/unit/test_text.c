/* common/plg_text: outside text made safe for logs, replies and JSON. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>

#include <cmocka.h>

#include "plg_text.h"

static void only_printable_ascii_passes(void **state)
{
  (void)state;
  assert_true(plg_text_printable_char(' '));
  assert_true(plg_text_printable_char('~'));
  assert_false(plg_text_printable_char('\n'));
  assert_false(plg_text_printable_char(0x7f));
  assert_false(plg_text_printable_char(0xc3)); /* a UTF-8 lead byte */
}

static void the_rest_and_quotes_become_question_marks_within_the_limit(void **state)
{
  (void)state;
  char out[9];
  assert_string_equal(plg_text_printable(out,
                                         "a\"b\x01\xff"
                                         "cdefghij",
                                         8),
                      "a?b??cde");
  assert_string_equal(plg_text_printable(out, "", 8), "");
  assert_string_equal(plg_text_printable(out, "/Volume", 8), "/Volume");
}

static void control_characters_are_found(void **state)
{
  (void)state;
  assert_false(plg_text_has_control("var/run/secrets"));
  assert_true(plg_text_has_control("a\nb"));
  assert_true(plg_text_has_control("a\x7f"));
  assert_false(plg_text_has_control("caf\xc3\xa9")); /* UTF-8 is not a control character */
}

int main(void)
{
  const struct CMUnitTest tests[] = {
      cmocka_unit_test(only_printable_ascii_passes),
      cmocka_unit_test(the_rest_and_quotes_become_question_marks_within_the_limit),
      cmocka_unit_test(control_characters_are_found),
  };
  return cmocka_run_group_tests(tests, NULL, NULL);
}
