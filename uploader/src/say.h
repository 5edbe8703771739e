/*
 * say.h - the uploader's messages to the user: one line on stderr each.
 */
#ifndef TSU_SAY_H
#define TSU_SAY_H

/* One line on stderr, "telespool-upload: " and the message. */
void tsu_say(const char *fmt, ...)
#if defined(__GNUC__)
    __attribute__((format(printf, 1, 2)))
#endif
    ;

#endif
