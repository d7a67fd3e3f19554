#include "plg_settings.h"

#include <ctype.h>
#include <errno.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

int plg_parse_bool(const char *value, bool *out, plg_error_t *err)
{
  /* The spellings Go's strconv.ParseBool takes, which users of the reference plugin know. */
  static const char *const yes[] = {"1", "t", "T", "true", "TRUE", "True", "yes", "on"};
  static const char *const no[] = {"0", "f", "F", "false", "FALSE", "False", "no", "off"};
  for (size_t i = 0; i < sizeof yes / sizeof yes[0]; i++) {
    if (strcmp(value, yes[i]) == 0) {
      *out = true;
      return 0;
    }
    if (strcmp(value, no[i]) == 0) {
      *out = false;
      return 0;
    }
  }
  return plg_error_bad_request(err, "\"%s\" is not a boolean (use true or false)", value);
}

int plg_parse_int(const char *value, int64_t min, int64_t max, int64_t *out, plg_error_t *err)
{
  const char *p = value;
  if (*p == '+' || *p == '-')
    p++;
  if (*p == '\0')
    return plg_error_bad_request(err, "\"%s\" is not an integer", value);
  for (; *p != '\0'; p++)
    if (!isdigit((unsigned char)*p))
      return plg_error_bad_request(err, "\"%s\" is not an integer", value);
  errno = 0;
  long long v = strtoll(value, NULL, 10);
  if (errno == ERANGE || v < min || v > max)
    return plg_error_bad_request(err, "\"%s\" is out of range (%lld-%lld)", value, (long long)min,
                                 (long long)max);
  *out = v;
  return 0;
}

int plg_parse_port(const char *name, const char *value, int *out, plg_error_t *err)
{
  int64_t port;
  plg_error_t inner = NULL;
  if (plg_parse_int(value, 1, 65535, &port, &inner) < 0 || value[0] == '+' || value[0] == '-') {
    plg_error_release(&inner);
    return plg_error_bad_request(err, "option \"%s\": \"%.32s\" is not a port number (1-65535)", name, value);
  }
  *out = (int)port;
  return 0;
}

struct duration_unit {
  const char *name;
  double ms;
};

static const struct duration_unit duration_units[] = {
    {"ns", 1e-6}, {"us", 1e-3}, {"µs", 1e-3}, {"ms", 1.0}, {"s", 1e3}, {"m", 60e3}, {"h", 3600e3},
};

static const struct duration_unit *match_unit(const char *p, size_t *len)
{
  const struct duration_unit *best = NULL;
  size_t best_len = 0;
  for (size_t i = 0; i < sizeof duration_units / sizeof duration_units[0]; i++) {
    size_t n = strlen(duration_units[i].name);
    if (n > best_len && strncmp(p, duration_units[i].name, n) == 0) {
      best = &duration_units[i];
      best_len = n;
    }
  }
  *len = best_len;
  return best;
}

int plg_parse_duration_ms(const char *value, int64_t max_ms, int64_t *out, plg_error_t *err)
{
  if (strcmp(value, "0") == 0) {
    *out = 0;
    return 0;
  }
  const char *p = value;
  double total = 0;
  if (*p == '\0')
    return plg_error_bad_request(err, "empty duration");
  while (*p != '\0') {
    if (!isdigit((unsigned char)*p) && *p != '.')
      return plg_error_bad_request(err, "\"%s\" is not a duration (like 500ms, 5s, 1m30s)", value);
    char *end;
    errno = 0;
    double number = strtod(p, &end);
    /* strtod would also take hex, exponents and infinities: insist on digits and one dot */
    for (const char *q = p; q < end; q++)
      if (!isdigit((unsigned char)*q) && *q != '.')
        return plg_error_bad_request(err, "\"%s\" is not a duration (like 500ms, 5s, 1m30s)", value);
    if (end == p || errno == ERANGE)
      return plg_error_bad_request(err, "\"%s\" is not a duration (like 500ms, 5s, 1m30s)", value);
    size_t unit_len;
    const struct duration_unit *unit = match_unit(end, &unit_len);
    if (unit == NULL)
      return plg_error_bad_request(err, "\"%s\" lacks a unit (ms, s, m or h)", value);
    total += number * unit->ms;
    if (total > (double)max_ms)
      return plg_error_bad_request(err, "\"%s\" is longer than the maximum of %lld ms", value,
                                   (long long)max_ms);
    p = end + unit_len;
  }
  *out = (int64_t)total;
  return 0;
}

static const char *env_value(const char *name)
{
  const char *v = getenv(name);
  return (v == NULL || *v == '\0') ? NULL : v;
}

int plg_setting_bool(const char *name, bool def, bool *out, plg_error_t *err)
{
  const char *v = env_value(name);
  if (v == NULL) {
    *out = def;
    return 0;
  }
  if (plg_parse_bool(v, out, err) < 0)
    return plg_error_wrap(err, "setting %s", name);
  return 0;
}

int plg_setting_int(const char *name, int64_t def, int64_t min, int64_t max, int64_t *out, plg_error_t *err)
{
  const char *v = env_value(name);
  if (v == NULL) {
    *out = def;
    return 0;
  }
  if (plg_parse_int(v, min, max, out, err) < 0)
    return plg_error_wrap(err, "setting %s", name);
  return 0;
}

int plg_setting_duration_ms(const char *name, int64_t def_ms, int64_t max_ms, int64_t *out, plg_error_t *err)
{
  const char *v = env_value(name);
  if (v == NULL) {
    *out = def_ms;
    return 0;
  }
  if (plg_parse_duration_ms(v, max_ms, out, err) < 0)
    return plg_error_wrap(err, "setting %s", name);
  return 0;
}

const char *plg_setting_string(const char *name, const char *def)
{
  const char *v = env_value(name);
  return v == NULL ? def : v;
}
