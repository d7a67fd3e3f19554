/* Text that came from outside (request paths, a peer's error message, a JSON parser's quote of
 * request bytes) before it goes into a log line, an error reply or JSON: printable ASCII only, and
 * never longer than asked. */
#ifndef PLG_TEXT_H
#define PLG_TEXT_H

#include <stdbool.h>
#include <stddef.h>

/* True for the printable ASCII characters, ' ' to '~'. */
bool plg_text_printable_char(unsigned char c);

/* True when S holds a control character (below ' ', or DEL). */
bool plg_text_has_control(const char *s);

/* Writes at most MAX characters of SRC to DST (MAX + 1 bytes), each that is not printable, or is a
 * '"', replaced by '?'; returns DST. */
char *plg_text_printable(char *dst, const char *src, size_t max);

#endif
