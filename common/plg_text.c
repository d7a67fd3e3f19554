#include "plg_text.h"

bool plg_text_printable_char(unsigned char c)
{
  return c >= 0x20 && c < 0x7f;
}

bool plg_text_has_control(const char *s)
{
  for (; *s != '\0'; s++)
    if ((unsigned char)*s < 0x20 || (unsigned char)*s == 0x7f)
      return true;
  return false;
}

char *plg_text_printable(char *dst, const char *src, size_t max)
{
  size_t i;
  for (i = 0; i < max && src[i] != '\0'; i++)
    dst[i] = plg_text_printable_char((unsigned char)src[i]) && src[i] != '"' ? src[i] : '?';
  dst[i] = '\0';
  return dst;
}
