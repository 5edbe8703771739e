/*
 * curl_api.h - the libcurl functions the uploader uses, loaded on first use.
 *
 * telespool-upload is not linked against libcurl: an idle run (nothing due,
 * the common case under cron or a timer) never touches the network, and
 * loading libcurl with its thirty-odd dependencies (OpenSSL, nghttp2,
 * GSS-API, LDAP, ...) took about 7 ms, more than the rest of such a run.  The
 * functions are looked up with dlopen()/dlsym() when the first request is
 * about to be sent; systemd loads its optional libraries the same way.
 *
 * Only http.c calls them, always through tsu_curl after tsu_curl_load().
 */
#ifndef TSU_CURL_API_H
#define TSU_CURL_API_H

#include <stddef.h>

#include <curl/curl.h>

struct tsu_curl_api {
	CURLcode (*global_init)(long flags);
	void (*global_cleanup)(void);
	CURL *(*easy_init)(void);
	CURLcode (*easy_setopt)(CURL *curl, CURLoption option, ...);
	CURLcode (*easy_getinfo)(CURL *curl, CURLINFO info, ...);
	void (*easy_cleanup)(CURL *curl);
	const char *(*easy_strerror)(CURLcode code);
	CURLM *(*multi_init)(void);
	CURLMcode (*multi_setopt)(CURLM *multi, CURLMoption option, ...);
	CURLMcode (*multi_add_handle)(CURLM *multi, CURL *curl);
	CURLMcode (*multi_remove_handle)(CURLM *multi, CURL *curl);
	CURLMcode (*multi_perform)(CURLM *multi, int *running);
	CURLMcode (*multi_poll)(CURLM *multi, struct curl_waitfd extra[],
				unsigned n_extra, int timeout_ms, int *numfds);
	CURLMsg *(*multi_info_read)(CURLM *multi, int *left);
	CURLMcode (*multi_cleanup)(CURLM *multi);
	const char *(*multi_strerror)(CURLMcode code);
	struct curl_slist *(*slist_append)(struct curl_slist *list,
					   const char *s);
	void (*slist_free_all)(struct curl_slist *list);
};

/* Filled by tsu_curl_load(); all NULL before. */
extern struct tsu_curl_api tsu_curl;

/*
 * Loads libcurl (the environment's TELESPOOL_LIBCURL, else
 * TSU_LIBCURL_SONAME: "libcurl.so.4" unless the build says otherwise) and
 * looks up every function above, once per process.  Returns 0, or -1 with
 * a message in err (the library or a function missing).
 */
int tsu_curl_load(char *err, size_t errlen);

#endif
