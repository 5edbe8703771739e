/*
 * curl_api.c - libcurl, loaded when the first request is about to be sent
 * (curl_api.h says why).
 */
#include "curl_api.h"

#include <dlfcn.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#ifndef TSU_LIBCURL_SONAME
#define TSU_LIBCURL_SONAME "libcurl.so.4"
#endif

struct tsu_curl_api tsu_curl;

/* The symbol of each member of struct tsu_curl_api, in order. */
static const struct {
	const char *name;
	size_t offset;
} symbols[] = {
#define SYM(member, name)                                                      \
	{                                                                      \
		name, offsetof(struct tsu_curl_api, member)                    \
	}
    SYM(global_init, "curl_global_init"),
    SYM(global_cleanup, "curl_global_cleanup"),
    SYM(easy_init, "curl_easy_init"),
    SYM(easy_setopt, "curl_easy_setopt"),
    SYM(easy_getinfo, "curl_easy_getinfo"),
    SYM(easy_cleanup, "curl_easy_cleanup"),
    SYM(easy_strerror, "curl_easy_strerror"),
    SYM(multi_init, "curl_multi_init"),
    SYM(multi_setopt, "curl_multi_setopt"),
    SYM(multi_add_handle, "curl_multi_add_handle"),
    SYM(multi_remove_handle, "curl_multi_remove_handle"),
    SYM(multi_perform, "curl_multi_perform"),
    SYM(multi_poll, "curl_multi_poll"),
    SYM(multi_info_read, "curl_multi_info_read"),
    SYM(multi_cleanup, "curl_multi_cleanup"),
    SYM(multi_strerror, "curl_multi_strerror"),
    SYM(slist_append, "curl_slist_append"),
    SYM(slist_free_all, "curl_slist_free_all"),
#undef SYM
};

int tsu_curl_load(char *err, size_t errlen)
{
	static void *lib;
	struct tsu_curl_api api;

	if (lib != NULL)
		return 0;
	/* TELESPOOL_LIBCURL names another build of libcurl 4 (a path or a
	 * soname); whoever sets the environment could LD_PRELOAD anyway. */
	const char *name = getenv("TELESPOOL_LIBCURL");
	if (name == NULL || name[0] == '\0')
		name = TSU_LIBCURL_SONAME;
	/* RTLD_LOCAL: its symbols stay out of the way of everything else. */
	void *h = dlopen(name, RTLD_NOW | RTLD_LOCAL);
	if (h == NULL) {
		const char *why = dlerror();
		snprintf(err, errlen, "cannot load libcurl (%s): %s", name,
			 why ? why : "unknown error");
		return -1;
	}
	for (size_t i = 0; i < sizeof(symbols) / sizeof(symbols[0]); i++) {
		void *f = dlsym(h, symbols[i].name);
		if (f == NULL) {
			snprintf(err, errlen,
				 "%s has no %s: libcurl 7.66 or later is "
				 "needed",
				 name, symbols[i].name);
			dlclose(h);
			return -1;
		}
		/* POSIX guarantees that a data pointer from dlsym() converts
		 * to the function pointer it stands for. */
		memcpy((char *)&api + symbols[i].offset, &f, sizeof(f));
	}
	tsu_curl = api;
	lib = h; /* kept until exit: libcurl has no safe unload */
	return 0;
}
