/*
 * say.c - the uploader's messages to the user (say.h).
 */
#include "say.h"

#include <stdarg.h>
#include <stdio.h>

void tsu_say(const char *fmt, ...)
{
	va_list ap;
	va_start(ap, fmt);
	fputs("telespool-upload: ", stderr);
	vfprintf(stderr, fmt, ap);
	fputc('\n', stderr);
	va_end(ap);
}
