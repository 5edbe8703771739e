/*
 * auth.h - the optional credential helper (--auth-command), on the pattern
 * of git's credential helpers.
 *
 * By default telespool sends no Authorization header: the privacy policy
 * promises telemetry that is not linked to anyone.  An operator who wants
 * LangBot's attributed telemetry names a command; it is run at send time,
 * through /bin/sh, with the event's workspace_uuid appended as its last
 * argument, stdin from /dev/null, and must print the workspace owner's
 * Space access token on its first line of stdout ("Bearer " in front is
 * accepted) and exit 0.  An empty line means "no token": no header, as
 * LangBot does when it finds none.  Its output ends when it exits: a child
 * it leaves running with stdout open does not hold the run.  The token
 * lives in memory only, for the run (one helper call per workspace per run
 * at most), and is wiped when the run ends; it is never stored, logged or
 * shown.
 */
#ifndef TSU_AUTH_H
#define TSU_AUTH_H

#include <stddef.h>

#define TSU_AUTH_TIMEOUT_MS 10000       /* the helper is killed after this */
#define TSU_AUTH_MAX_OUTPUT (16 * 1024) /* more output is an error */

typedef struct tsu_auth tsu_auth;

/* A helper running command (borrowed: must outlive the tsu_auth), killed
 * after timeout_ms (0: TSU_AUTH_TIMEOUT_MS).  Returns 0 with it in *out,
 * or -1 with *out NULL and why in err (no command, out of memory). */
int tsu_auth_new(tsu_auth **out, const char *command, long timeout_ms,
		 char *err, size_t errlen);

/*
 * The Authorization header value ("Bearer <token>") for workspace, running
 * the helper the first time this workspace is asked for.  Returns 0 with
 * *value set (NULL: no header; else valid until tsu_auth_free()), or -1
 * with a one-line reason in err (timeout, exit status, bad output: never
 * the output itself); a failure is remembered for the workspace too.
 */
int tsu_auth_get(tsu_auth *a, const char *workspace, const char **value,
		 char *err, size_t errlen);

/* Wipes every token and frees a.  NULL is a no-op. */
void tsu_auth_free(tsu_auth *a);

#endif
