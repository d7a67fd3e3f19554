/* Plugin settings come from the environment (`docker plugin set NAME VAR=value`). Each parser
 * rejects a bad value with a message naming the variable, so a typo stops the plugin at start
 * instead of behaving differently than the user asked. */
#ifndef PLG_SETTINGS_H
#define PLG_SETTINGS_H

#include "plg_error.h"

#include <stdbool.h>
#include <stdint.h>

/* Pure parsers; each returns 0 or -1 with an error that describes VALUE (not its name). */
int plg_parse_bool(const char *value, bool *out, plg_error_t *err);
int plg_parse_int(const char *value, int64_t min, int64_t max, int64_t *out, plg_error_t *err);
/* A port of an option named NAME: "1".."65535", digits only; the error names the option:
 * option "port": "70000" is not a port number (1-65535). */
int plg_parse_port(const char *name, const char *value, int *out, plg_error_t *err);
/* Go-style durations ("250ms", "5s", "1m30s", "1.5s", "0"), rounded down to milliseconds. */
int plg_parse_duration_ms(const char *value, int64_t max_ms, int64_t *out, plg_error_t *err);

/* Environment lookups: an unset or empty variable gives DEFAULT. */
int plg_setting_bool(const char *name, bool def, bool *out, plg_error_t *err);
int plg_setting_int(const char *name, int64_t def, int64_t min, int64_t max, int64_t *out, plg_error_t *err);
int plg_setting_duration_ms(const char *name, int64_t def_ms, int64_t max_ms, int64_t *out, plg_error_t *err);
const char *plg_setting_string(const char *name, const char *def);

#endif
