/*
 * test_redact.c - the privacy promise, checked: every kind of secret and
 * identity is replaced, what makes a traceback useful survives, output is
 * always valid UTF-8 within its cap, and adversarial input stays linear.
 *
 * Usage: test_redact [--list | CASE...] (tu_main, tests/testutil.h); the
 * corpus is TEST_CORPUS_DIR/tracebacks and TEST_CORPUS_DIR/errors
 * (tests/CMakeLists.txt defines it as tests/corpus).
 * Each NAME.txt there comes with NAME.secrets (strings that must be gone),
 * NAME.keep (strings that must survive, strict mode too) and optionally
 * NAME.strict-secrets (message text that only strict mode removes).
 *
 * Built with -DTEST_REDACT_OOM (without lib/src/clean.c, redact.c and
 * traceback.c on the command line, with -lcjson) it includes those three
 * with failing allocators and also checks that every allocation failure
 * gives NULL without a leak.
 */
#include <cjson/cJSON.h>
#include <dirent.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "testutil.h"

#ifdef TEST_REDACT_OOM
static long oom_countdown = -1; /* fail the allocation that brings it to 0 */

static void *oom_malloc(size_t n)
{
	if (oom_countdown >= 0 && oom_countdown-- == 0)
		return NULL;
	return malloc(n);
}

static void *oom_realloc(void *p, size_t n)
{
	if (oom_countdown >= 0 && oom_countdown-- == 0)
		return NULL;
	return realloc(p, n);
}

#define malloc  oom_malloc
#define realloc oom_realloc
#include "clean.c"
#include "redact.c"
#include "traceback.c"
#undef malloc
#undef realloc
#else
#include "clean.h"
#include "redact.h"
#include "traceback.h"
#endif

#include "text_checks.h"

#define CAP TELESPOOL_ERROR_MAX

/* ---- helpers ---------------------------------------------------------- */

static char *text(const char *in, size_t max, int strict)
{
	size_t n = (size_t)-1;
	char *out =
	    telespool__clean_text(in, in ? strlen(in) : 0, max, strict, &n);

	if (out && n != strlen(out))
		TU_FAIL("out_len %zu != strlen %zu", n, strlen(out));
	return out;
}

static void check_eq(int line, const char *what, const char *in,
		     const char *got, const char *want)
{
	if (got && strcmp(got, want) == 0) {
		tu_passed++;
		return;
	}
	tu_failed++;
	fprintf(stderr,
		"test_redact.c:%d: %s\n  input:    \"%s\"\n  expected: \"%s\"\n"
		"  actual:   \"%s\"\n",
		line, what, in, want, got ? got : "(null)");
}

/* clean_text(in) == want */
#define T_TEXT(in, want)                                                       \
	do {                                                                   \
		char *o_ = text(in, CAP, 0);                                   \
		check_eq(__LINE__, "clean_text", in, o_, want);                \
		free(o_);                                                      \
	} while (0)

/* clean_text leaves in unchanged */
#define T_KEEP(in) T_TEXT(in, in)

/* clean_text(in, strict) == want */
#define T_STRICT(in, want)                                                     \
	do {                                                                   \
		char *o_ = text(in, CAP, 1);                                   \
		check_eq(__LINE__, "clean_text strict", in, o_, want);         \
		free(o_);                                                      \
	} while (0)

/* clean_name(in, max) == want */
#define T_NAME(in, max, want)                                                  \
	do {                                                                   \
		char *o_ = telespool__clean_name(in, strlen(in), max);         \
		check_eq(__LINE__, "clean_name", in, o_, want);                \
		free(o_);                                                      \
	} while (0)

/* same with explicit length (NULs, invalid bytes) */
#define T_NAME_N(in, len, max, want)                                           \
	do {                                                                   \
		char *o_ = telespool__clean_name(in, len, max);                \
		check_eq(__LINE__, "clean_name", #in, o_, want);               \
		free(o_);                                                      \
	} while (0)

#define T_TEXT_N(in, len, want)                                                \
	do {                                                                   \
		char *o_ = telespool__clean_text(in, len, CAP, 0, NULL);       \
		check_eq(__LINE__, "clean_text", #in, o_, want);               \
		free(o_);                                                      \
	} while (0)

/* ---- credentials ------------------------------------------------------ */

static void test_credentials(void)
{
	/* provider keys */
	T_TEXT("key sk-proj-Ab3dEf6hIj9kLm2nOp5qRs8tUv1wXy4zAB7cD0eF",
	       "key <redacted:api_key>");
	T_TEXT("OPENAI sk-Tx9a8b7c6d5e4f3g2h1i0jK9L8M7N6O5P4Q3R2S1T0U9V8W7.",
	       "OPENAI <redacted:api_key>.");
	T_TEXT("x-api-key sk-ant-api03-R2D2c3po_Vb8xQ1fKz7LmNp-AbCdEfGhAA end",
	       "x-api-key <redacted:api_key> end");
	T_TEXT("deepseek sk-9f8e7d6c5b4a39281706f5e4d3c2b1a0",
	       "deepseek <redacted:api_key>");
	T_TEXT("moonshot=sk-QwErTyUiOpAsDfGhJkLzXcVbNmQwErTyUiOpAsDfGhJkLzXcVb",
	       "moonshot=<redacted:api_key>");
	T_TEXT("provided: sk-proj-Xa7f****************************Qz9W. You",
	       "provided: <redacted:api_key>. You");
	T_TEXT("google AIzaSyA1bC2dE3fG4hI5jK6lM7nO8pQ9rS0tU1v ok",
	       "google <redacted:api_key> ok");
	T_TEXT("hf hf_AbCdEfGhIjKlMnOpQrStUvWxYz0123456789",
	       "hf <redacted:api_key>");
	T_TEXT("dify app-Kx9mQ2vL7pZ3nR8tY5wB1cD4", "dify <redacted:api_key>");
	/* not keys */
	T_KEEP("scikit-learn sk-learn task-1234567890abcdef disk-free");
	T_KEEP("app-config-loader app-v2");

	/* Bearer and Authorization */
	T_TEXT("Authorization: Bearer abc123def456ghi789",
	       "Authorization: Bearer <redacted:bearer>");
	T_TEXT("authorization=\"Bearer abc.def-123_ghi\"",
	       "authorization=\"Bearer <redacted:bearer>\"");
	T_TEXT("{'Authorization': 'Basic dXNlcjpwYXNzd29yZA=='}",
	       "{'Authorization': 'Basic <redacted:authorization>'}");
	T_TEXT("Proxy-Authorization: Basic dXNlcjpwYXNz",
	       "Proxy-Authorization: Basic <redacted:authorization>");
	T_TEXT("curl -H 'Authorization: token ghx_notatoken' x",
	       "curl -H 'Authorization: token <redacted:authorization>' x");
	T_TEXT("sent Bearer 9f86d081884c7d659a2feaa0c55ad015 to the API",
	       "sent Bearer <redacted:bearer> to the API");
	T_KEEP("the Bearer token was rejected");
	T_KEEP("    headers = {'Authorization': f'Bearer {self.api_key}'}");

	/* JWT */
	T_TEXT("jwt eyJhbGciOiJIUzI1NiJ9.eyJzdWIiOiIxMjM0NTY3ODkwIn0."
	       "dozjgNryP4J3jVmNHl0w5N_XgL0n3I9PlFUP0THsR8U end",
	       "jwt <redacted:jwt> end");
	T_TEXT("t=eyJhbGciOiJub25lIn0.eyJzdWIiOiIxIn0.", "t=<redacted:jwt>");
	T_TEXT("(eyJhbGciOiJub25lIn0.eyJzdWIiOiIxIn0)", "(<redacted:jwt>)");
	T_KEEP("eyJhbGciOiJub25lIn0 alone is a header, not a token");

	/* AWS */
	T_TEXT("aws AKIAIOSFODNN7EXAMPLE here", "aws <redacted:aws_key> here");
	T_TEXT("sts ASIAY34FZKBOKMUTVV7A,", "sts <redacted:aws_key>,");
	T_KEEP("AKIAIOSFODNN7EXAMPLEX AKIASHORT");

	/* GitHub, GitLab, Slack */
	T_TEXT("ghp_1234567890abcdefghijABCDEFGHIJ123456",
	       "<redacted:github_token>");
	T_TEXT("gho_1234567890abcdefghijABCDEFGHIJ123456 "
	       "ghu_1234567890abcdefghijABCDEFGHIJ123456 "
	       "ghs_1234567890abcdefghijABCDEFGHIJ123456 "
	       "ghr_1234567890abcdefghijABCDEFGHIJ123456",
	       "<redacted:github_token> <redacted:github_token> "
	       "<redacted:github_token> <redacted:github_token>");
	T_TEXT("pat github_pat_11ABCDEFG0123456789_abcdefghijklmnopqrstuvwxyz",
	       "pat <redacted:github_token>");
	T_TEXT("https://oauth2:glpat-AbCdEf1234567890xYzW@gitlab.com/a/b.git",
	       "https://<redacted:url_password>@gitlab.com/a/b.git");
	T_TEXT("gl glpat-AbCdEf1234567890xYzW", "gl <redacted:gitlab_token>");
	T_TEXT("slack xoxb-123456789012-1234567890123-AbCdEfGhIjKlMnOpQrStUvWx",
	       "slack <redacted:slack_token>");
	T_TEXT("xoxp-1234-5678-90ab-cdef", "<redacted:slack_token>");
	T_TEXT(
	    "bot https://api.telegram.org/bot7123456789:AAHdqTcvCH1vGWJxfSeof"
	    "SAs0K5PALDsaw1/getMe",
	    "bot https://api.telegram.org/bot<redacted:bot_token>/getMe");
	T_TEXT(
	    "discord "
	    "MTA4NzY1NDMyMTA5ODc2NTQzMg.GaBcDe.abcdefghijklmnopqrstuvwxyz0123",
	    "discord <redacted:discord_token>");

	/* private keys: the whole block */
	T_TEXT(
	    "before\n-----BEGIN RSA PRIVATE KEY-----\n"
	    "MIIEowIBAAKCAQEAx1y2z3ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmn\n"
	    "opqrstuvwxyz0123456789+/==\n"
	    "-----END RSA PRIVATE KEY-----\nafter",
	    "before\n<redacted:private_key>\nafter");
	T_TEXT("-----BEGIN OPENSSH PRIVATE KEY-----\nb3BlbnNzaC1rZXktdjEAAAAA\n"
	       "-----END OPENSSH PRIVATE KEY-----",
	       "<redacted:private_key>");
	T_TEXT("-----BEGIN ENCRYPTED PRIVATE KEY-----\nProc-Type: 4,ENCRYPTED\n"
	       "DEK-Info: AES-128-CBC,0123ABCD\n\nMIIC\n"
	       "-----END ENCRYPTED PRIVATE KEY-----",
	       "<redacted:private_key>");
	T_TEXT(
	    "ValueError: bad key '-----BEGIN PRIVATE KEY-----\\nMIIEvQIBADANBg"
	    "kqhkiG9w0BAQEFAASC\\n-----END PRIVATE KEY-----\\n'",
	    "ValueError: bad key '<redacted:private_key>\\n'");
	/* a block cut short: the key lines go, the next line stays */
	T_TEXT(
	    "-----BEGIN EC PRIVATE KEY-----\n"
	    "MHcCAQEEIBkg4LVWM9nuwNSk3yByxZpYRTBnVJk5oWnYoC7bVqFaoAoGCCqGSM49\n"
	    "  File \"/app/x.py\", line 3, in f",
	    "<redacted:private_key>\n  File \"/app/x.py\", line 3, in f");
	T_KEEP("-----BEGIN CERTIFICATE-----\nMIIB\n-----END CERTIFICATE-----");

	/* key = value, every common spelling */
	T_TEXT("password=hunter2 next", "password=<redacted:password> next");
	T_TEXT("PASSWORD: hunter2", "PASSWORD: <redacted:password>");
	T_TEXT("passwd=hunter2", "passwd=<redacted:password>");
	T_TEXT("pwd: hunter2", "pwd: <redacted:password>");
	T_TEXT("\"password\": \"hunter 2\"",
	       "\"password\": \"<redacted:password>\"");
	T_TEXT("{'password': 'it''s'}",
	       "{'password': '<redacted:password>''s'}");
	T_TEXT("password=\"p@ss w0rd\"", "password=\"<redacted:password>\"");
	T_TEXT("secret=abc123", "secret=<redacted:secret>");
	T_TEXT("client_secret='abc123'", "client_secret='<redacted:secret>'");
	T_TEXT("token=abc123&page=2", "token=<redacted:token>&page=2");
	T_TEXT("?access_token=abc123", "?access_token=<redacted:token>");
	T_TEXT("api_key=abc123", "api_key=<redacted:api_key>");
	T_TEXT("apikey: abc123", "apikey: <redacted:api_key>");
	T_TEXT("Api-Key: abc123", "Api-Key: <redacted:api_key>");
	T_TEXT("OPENAI_API_KEY=abc123", "OPENAI_API_KEY=<redacted:api_key>");
	T_TEXT("export DB_PASSWORD='abc123'",
	       "export DB_PASSWORD='<redacted:password>'");
	T_TEXT("{\\\"token\\\": \\\"abc123\\\"}",
	       "{\\\"token\\\": \\\"<redacted:token>\\\"}");
	T_TEXT("x = Settings(api_key=SecretStr('abc'), token=b'xyz')",
	       "x = Settings(api_key=SecretStr('abc'), "
	       "token=b'<redacted:token>')");
	T_TEXT("https://x.example/v1?key=abc123&alt=json",
	       "https://x.example/v1?key=<redacted:api_key>&alt=json");
	/* code, not values */
	T_KEEP("password=None, token=None");
	T_KEEP("    client = OpenAI(api_key=api_key, base_url=base_url)");
	T_KEEP("    self.password = password");
	T_KEEP("    token = self._tokens[chat]");
	T_KEEP("    api_key = os.getenv(\"OPENAI_API_KEY\")");
	T_KEEP(
	    "    def login(self, password: str, token: Optional[str] = None):");
	T_KEEP("    token = await self.refresh()");
	T_KEEP("max_tokens=4096, tokenizer=cl100k_base, secrets.token_hex(16)");
	T_KEEP("KeyError: 'api_key'");

	/* URL and DSN credentials */
	T_TEXT("postgresql://user:pw@db:5432/x",
	       "postgresql://<redacted:url_password>@db:5432/x");
	T_TEXT(
	    "mysql+pymysql://root:p@ss:w0rd@127.0.0.1:3306/langbot",
	    "mysql+pymysql://<redacted:url_password>@127.0.0.1:3306/langbot");
	T_TEXT("redis://:s3cret@cache/0",
	       "redis://<redacted:url_password>@cache/0");
	T_TEXT(
	    "proxy http://u:p@proxy.example:7890 failed",
	    "proxy http://<redacted:url_password>@proxy.example:7890 failed");
	T_KEEP("https://api.openai.com/v1/chat/completions?x=1");
	T_KEEP("see https://sqlalche.me/e/20/e3q8 for details");
}

/* ---- identities and addresses ------------------------------------------ */

static void test_identities(void)
{
	T_TEXT("mail alice.smith+tag@example.co.uk now",
	       "mail <redacted:email> now");
	T_TEXT("<bob@example.org>", "<<redacted:email>>");
	T_TEXT("qq mail 123456789@qq.com", "qq mail <redacted:email>");
	T_TEXT("Contact 张三zhang@example.cn", "Contact 张三<redacted:email>");
	T_KEEP("    @property");
	T_KEEP("pip install openai@1.2.3 and @types/node");

	T_TEXT("call +1 415 555 0100.", "call <redacted:phone>.");
	T_TEXT("call +86 138 0013 8000", "call <redacted:phone>");
	T_TEXT("call +44 20 7946 0958", "call <redacted:phone>");
	T_TEXT("call +1 (415) 555-0100 now", "call <redacted:phone> now");
	T_TEXT("call +8613800138000", "call <redacted:phone>");
	T_TEXT("手机13800138000。", "手机<redacted:phone>。");
	T_TEXT("手机 138 0013 8000", "手机 <redacted:phone>");
	T_TEXT("tel 138-0013-8000.", "tel <redacted:phone>.");
	T_TEXT("tel 86-13800138000", "tel 86-<redacted:phone>");
	T_TEXT("座机 010-12345678 ok", "座机 <redacted:phone> ok");
	T_KEEP("2025-03-14T09:12:44+08:00 UTC+8 1+2");

	T_TEXT("QQ 123456789 said", "QQ <redacted:id> said");
	T_TEXT("QQ号：1234567890。", "QQ号：<redacted:id>。");
	T_TEXT("chat -1001234567890 failed", "chat <redacted:id> failed");
	T_TEXT("chat_id=-1001234567890", "chat_id=<redacted:id>");
	T_TEXT("'user_id': 12345, 'group_id': 67890",
	       "'user_id': <redacted:id>, 'group_id': <redacted:id>");
	T_TEXT("GET /bot/chats/987654321/messages",
	       "GET /bot/chats/<redacted:id>/messages");
	T_TEXT("session person_1234567 and group_738291046",
	       "session person_<redacted:id> and group_<redacted:id>");
	T_TEXT("'nickname': '小明', 'card': 'Ming', 'first_name': 'Al'",
	       "'nickname': '<redacted:user>', 'card': '<redacted:user>', "
	       "'first_name': '<redacted:user>'");
	T_TEXT("blocked by @alice_tg today",
	       "blocked by @<redacted:user> today");
	T_TEXT("failed for user \"langbot\"",
	       "failed for user \"<redacted:user>\"");
	T_TEXT("denied for user 'root'@'10.0.0.5'",
	       "denied for user '<redacted:user>'@'<redacted:ip>'");
	T_TEXT("'raw_message': '帮我查快递', 'text': 'hi'",
	       "'raw_message': '<redacted:text>', 'text': '<redacted:text>'");

	/* digits that are not ids */
	T_KEEP("  File \"/app/x.py\", line 1234567, in f");
	T_KEEP("pi 3.14159265 e 2.7182818 t 1741957517.123 v1.1234567 v4.3.1");
	T_KEEP("uuid 550e8400-e29b-41d4-a716-446655440000 "
	       "123e4567-e89b-12d3-a456-426614174000");
	T_KEEP("hex deadbeef123456 0x7f3a2b1c4d50 sha 1234567abcdef "
	       "12345678-1234-1234-1234-123456789012");
	T_KEEP(
	    "abc123456 a_1234567 build-20240607123456-x port 65535 code 40001");
	T_KEEP("2024-01-15 10:23:45.123456 2024-01-15T10:23:45,123");

	/* home directories */
	T_TEXT("/home/alice/LangBot/main.py",
	       "/home/<redacted:user>/LangBot/main.py");
	T_TEXT("\"/Users/bob/proj\"", "\"/Users/<redacted:user>/proj\"");
	T_TEXT("C:\\Users\\carol\\LangBot\\main.py",
	       "C:\\Users\\<redacted:user>\\LangBot\\main.py");
	T_TEXT("'C:\\\\Users\\\\dave\\\\LangBot'",
	       "'C:\\\\Users\\\\<redacted:user>\\\\LangBot'");
	T_TEXT("c:\\users\\erin\\x", "c:\\users\\<redacted:user>\\x");
	T_TEXT("/home/张伟/x", "/home/<redacted:user>/x");
	T_KEEP("/root/LangBot/main.py "
	       "/usr/lib/python3.11/site-packages/httpx/_client.py");
	T_KEEP("/Users/Shared/x /app/pkg/core/app.py");

	/* addresses */
	T_TEXT("connect 192.168.1.20:8080 refused",
	       "connect <redacted:ip> refused");
	T_TEXT("('8.8.8.8', 53)", "('<redacted:ip>', 53)");
	T_TEXT("host=10.0.0.5,", "host=<redacted:ip>,");
	T_TEXT("at 203.0.113.7.", "at <redacted:ip>.");
	T_TEXT("connecting to 10.0.0.1...", "connecting to <redacted:ip>...");
	T_KEEP("version 192.168.100.200.5 and 1.2.3.4.5.6.7.8.9.10.11.12");
	T_TEXT("('2606:4700::6810:7b8c', 443)", "('<redacted:ip>', 443)");
	T_TEXT("[2001:db8::1]:8443/x", "<redacted:ip>/x");
	T_TEXT("fe80::1%eth0 up", "<redacted:ip> up");
	T_TEXT("2001:0db8:85a3:0000:0000:8a2e:0370:7334", "<redacted:ip>");
	T_TEXT("::ffff:192.0.2.128 mapped", "<redacted:ip> mapped");
	T_TEXT("FE80::ABCD:1", "<redacted:ip>");
	T_KEEP("127.0.0.1:5300 localhost 0.0.0.0:8080 ::1 :: 255.255.255.0");
	T_KEEP("3.11.7 1.2.3.4.5 10:23:45 00:1a:2b:3c:4d:5e a[1::2] x[::-1]");
}

/* ---- what must survive ------------------------------------------------- */

static void test_survival(void)
{
	T_KEEP("Traceback (most recent call last):\n"
	       "  File \"/usr/lib/python3.11/site-packages/httpx/_client.py\", "
	       "line 1015, in send\n"
	       "    response = await self._send_handling_auth(\n"
	       "               ^^^^^^^^^^^^^^^^^^^^^^^^^^^^^^^\n"
	       "  File \"<string>\", line 1, in <module>\n"
	       "httpx.ConnectError: [Errno 111] Connection refused");
	T_KEEP("openai.AuthenticationError: Error code: 401");
	T_KEEP("LangBot v4.3.1 on Python 3.11.7, object at 0x7f3a2b");
	T_KEEP("query 3f2b9c1e-8d4a-4e6f-9b2c-1a2b3c4d5e6f failed");
	T_KEEP("Task exception was never retrieved\nfuture: <Task finished "
	       "name='Task-12' coro=<Controller.run() done>>");
	T_KEEP("\t中文 traceback 🙂 ok\n");
}

/* ---- strict mode -------------------------------------------------------- */

static void test_strict(void)
{
	static const char tb[] =
	    "2025-03-14 09:12:44 ERROR user alice said: my card is 1234\n"
	    "Traceback (most recent call last):\n"
	    "  File \"/home/alice/LangBot/pkg/core/app.py\", line 88, in run\n"
	    "    await self.handle(query)\n"
	    "  File \"/usr/lib/python3.11/site-packages/httpx/_client.py\", "
	    "line 1015, in send\n"
	    "    raise exc\n"
	    "           ^^^\n"
	    "httpx.ConnectError: All connection attempts failed: my secret "
	    "words\n"
	    "\n"
	    "During handling of the above exception, another exception "
	    "occurred:\n"
	    "\n"
	    "Traceback (most recent call last):\n"
	    "  File \"/app/pkg/pipeline/process/handlers/chat.py\", line 112, "
	    "in handle\n"
	    "    raise RuntimeError(str(e))\n"
	    "RuntimeError: All connection attempts failed: my secret words\n"
	    "and a second line of the message\n";
	static const char want[] =
	    "Traceback (most recent call last):\n"
	    "  File \"/home/<redacted:user>/LangBot/pkg/core/app.py\", line "
	    "88, in run\n"
	    "    await self.handle(query)\n"
	    "  File \"/usr/lib/python3.11/site-packages/httpx/_client.py\", "
	    "line 1015, in send\n"
	    "    raise exc\n"
	    "           ^^^\n"
	    "httpx.ConnectError\n"
	    "\n"
	    "During handling of the above exception, another exception "
	    "occurred:\n"
	    "\n"
	    "Traceback (most recent call last):\n"
	    "  File \"/app/pkg/pipeline/process/handlers/chat.py\", line 112, "
	    "in handle\n"
	    "    raise RuntimeError(str(e))\n"
	    "RuntimeError";

	T_STRICT(tb, want);
	T_STRICT("Traceback (most recent call last):\n"
		 "  File \"a.py\", line 1, in <module>\n"
		 "    f()\n"
		 "KeyboardInterrupt\n"
		 "\n"
		 "The above exception was the direct cause of the following "
		 "exception:\n"
		 "\n"
		 "openai.APIConnectionError: Connection error.\n",
		 "Traceback (most recent call last):\n"
		 "  File \"a.py\", line 1, in <module>\n"
		 "    f()\n"
		 "KeyboardInterrupt\n"
		 "\n"
		 "The above exception was the direct cause of the following "
		 "exception:\n"
		 "\n"
		 "openai.APIConnectionError");
	T_STRICT(
	    "  File \"x.py\", line 3\n    x = = 1\n        ^\nSyntaxError: "
	    "invalid syntax",
	    "  File \"x.py\", line 3\n    x = = 1\n        ^\nSyntaxError");
	T_STRICT("  File \"a.py\", line 5, in f\n"
		 "    f()\n"
		 "  [Previous line repeated 996 more times]\n"
		 "RecursionError: maximum recursion depth exceeded",
		 "  File \"a.py\", line 5, in f\n"
		 "    f()\n"
		 "  [Previous line repeated 996 more times]\n"
		 "RecursionError");
	/* a message line that looks like an exception keeps only the name */
	T_STRICT("ValueError: user text\nHello: world\nhello world\nJust text",
		 "ValueError");
	/* frames are still redacted */
	T_STRICT("  File \"C:\\Users\\carol\\x.py\", line 2, in f\n"
		 "    token = \"abc123\"\n",
		 "  File \"C:\\Users\\<redacted:user>\\x.py\", line 2, in f\n"
		 "    token = \"<redacted:token>\"");
	/* "File" lines that are not frames go */
	T_STRICT("File \"a\", line 1, in my secret words\nFile not found", "");
	T_STRICT("just a message from the user", "");
	T_STRICT("", "");
	/* CRLF tracebacks (Windows) */
	T_STRICT("Traceback (most recent call last):\r\n  File \"a.py\", line "
		 "1, in f\r\n"
		 "    g()\r\nValueError: x\r\n",
		 "Traceback (most recent call last):\n  File \"a.py\", line 1, "
		 "in f\n"
		 "    g()\nValueError");
}

/* ---- the traceback guard (clean_error) ---------------------------------- */

/* clean_error(in, strict) == want */
#define T_ERR(in, strict, want)                                                \
	do {                                                                   \
		char *o_ =                                                     \
		    telespool__clean_error(in, strlen(in), CAP, strict, NULL); \
		check_eq(__LINE__, "clean_error", in, o_, want);               \
		free(o_);                                                      \
	} while (0)

static void test_guard(void)
{
	/* the issue's false positives: kept in both functions */
	T_KEEP("telegram.error.InvalidToken: Not Found");
	T_TEXT("  File \"/app/x.py\", line 3, in f\n"
	       "    await ctx.reply(Plain(text=reply_text))",
	       "  File \"/app/x.py\", line 3, in f\n"
	       "    await ctx.reply(Plain(text=reply_text))");
	T_KEEP("{\"code\":230013,\"msg\":\"x\"} 'code': 100016, retcode=1200");
	/* ...while a literal on a source line still goes */
	T_TEXT("  File \"/app/x.py\", line 3, in f\n    x = Plain(text='hi')",
	       "  File \"/app/x.py\", line 3, in f\n"
	       "    x = Plain(text='<redacted:text>')");
	/* a yaml or jinja2 mark's excerpt is the document: user text */
	T_ERR("yaml.constructor.ConstructorError: could not determine a "
	      "constructor\n  in \"x.yaml\", line 7, column 14\n"
	      "    smtp_pass: !secret Hunter2-Olivia-1987\n"
	      "               ^",
	      0,
	      "yaml.constructor.ConstructorError: could not determine a "
	      "constructor\n  in <str:6>, line 7, column 14\n"
	      "    <excerpt:38>\n"
	      "               ^");
	T_ERR("yaml.scanner.ScannerError: mapping values\n"
	      "  in \"c.yaml\", line 1, column 9\n    a: b: 我的\n        ^",
	      1, "yaml.scanner.ScannerError");
	T_ERR("jinja2.exceptions.TemplateSyntaxError: unexpected '}'\n"
	      "  line 1\n    Dear {{ name }}}, your loan was declined",
	      1, "jinja2.exceptions.TemplateSyntaxError");
	/* CJK quotes quote */
	T_ERR("RuntimeError: 请求失败：“帮我查一下病历” 「私事」", 0,
	      "RuntimeError: 请求失败:<str:7> <str:2>");
	/* a name before an account id, a Discord user name */
	T_ERR("E: 用户 李晓华(3391827745) in #support-team from amelia.n#0 "
	      "and bob_9#1234: x#12",
	      0,
	      "E: 用户 <redacted:user>(<redacted:id>) in #support-team from "
	      "<redacted:user> and <redacted:user>: x#12");
	/* 发送: a message's text, commas and all */
	T_ERR("[INFO] : 用户 \"Sophie\" 发送: 我怀孕了，不知道该怎么说", 0,
	      "[INFO] : 用户 <str:6> 发送: <redacted:text>");
	T_TEXT("消息：今晚八点，老地方", "消息：<redacted:text>");
	/* a quoted URL keeps its host */
	T_ERR("httpx.HTTPStatusError: Client error '403 Forbidden' for url "
	      "'https://api.weixin.qq.com/cgi-bin/user/info?openid=oUpF8uMu'",
	      0,
	      "httpx.HTTPStatusError: Client error '403 Forbidden' for url "
	      "'https://api.weixin.qq.com<path:39>'");
	T_ERR("E: url=URL('https://oapi.dingtalk.com/robot/send?x=1'), "
	      "'https://a.b/c d'",
	      0, "E: url=URL('https://oapi.dingtalk.com<path:15>'), <str:15>");
	/* HTTP status lines and reason phrases are kept */
	T_ERR("E: POST https://api.telegram.org \"HTTP/1.1 403 Forbidden\" "
	      "message='Unauthorized' 'HTTP/2 200 OK' 'Jane Doe'",
	      0,
	      "E: POST https://api.telegram.org \"HTTP/1.1 403 Forbidden\" "
	      "message='Unauthorized' 'HTTP/2 200 OK' <str:8>");
	/* jinja2's frame: a function name with spaces */
	T_ERR("  File \"<template>\", line 3, in top-level template code\n"
	      "jinja2.exceptions.UndefinedError: 'dict object' has no "
	      "attribute 'nick'",
	      1,
	      "  File \"<template>\", line 3, in top-level template code\n"
	      "jinja2.exceptions.UndefinedError");
	/* pymysql's (errno, "text") keeps the errno */
	T_ERR("pymysql.err.IntegrityError: (1062, \"Duplicate entry "
	      "'li@x.cn' for key 'users.email'\")",
	      0, "pymysql.err.IntegrityError: (1062, <str:56>)");
	T_ERR("E: x (1062, 'x')", 0, "E: x <tuple:11>");
	/* a log line's "NAME said: text" */
	T_ERR("INFO [group_1] Hannah Schmidt said: send it to my address, ok\n"
	      "x said: hi\nValueError: the server said: no",
	      0,
	      "INFO [group_1] <redacted:user> said: <redacted:text>\n"
	      "x said: <redacted:text>\nValueError: the server said: "
	      "<redacted:text>");
	/* outside a source line an unquoted value is a value */
	T_TEXT("Plain(text=hello)", "Plain(text=<redacted:text>)");

	/* the pattern layer's new shapes */
	T_TEXT("wxid_ab12cd34ef 23456789012@chatroom",
	       "<redacted:id> <redacted:id>@chatroom");
	T_TEXT("ou_7d8a6e6df7621556ce0d21922b676706 "
	       "oUpF8uMuAJO_M2pxb1Q9zNjWeS6o ww1234567890abcdef",
	       "<redacted:id> <redacted:id> <redacted:id>");
	T_KEEP("oauth_callback_handler_v2 wwwroot www.example.com");
	T_TEXT("x?rkey=CAQSKAB6&fileid=EhRmZ",
	       "x?rkey=<redacted:secret>&fileid=<redacted:secret>");
	T_TEXT("data:image/png;base64,iVBORw0KGgoAAAANSUhEUgAA",
	       "data:image/png;base64,<redacted:data>");
	T_TEXT("https://discord.com/api/webhooks/1234567890123/AbCdEf_GhIjKlM",
	       "https://discord.com/api/webhooks/<redacted:webhook>");
	T_TEXT("https://hooks.slack.com/services/T0123ABCD/B0456EFGH/AbCdEfGh",
	       "https://hooks.slack.com/services/<redacted:webhook>");
	T_KEEP("https://api.example.com/services/status/");
	T_TEXT("call (415) 555-0123 or 212.555.0199",
	       "call <redacted:phone> or <redacted:phone>");
	T_TEXT("password: several words here, next",
	       "password: <redacted:password>, next");
	T_TEXT("密码：hunter two，ok", "密码：<redacted:password>，ok");
	T_TEXT("C:\\Users\\First Last\\LangBot\\x.py",
	       "C:\\Users\\<redacted:user>\\LangBot\\x.py");
	T_TEXT("mykeysk-proj-Ab3dEf6hIj9kLm2nOp5qRs8tUv1wXy4zAB7 "
	       "_sk-proj-Ab3dEf6hIj9kLm2nOp5qRs8tU",
	       "mykey<redacted:api_key> _<redacted:api_key>");

	/* messages keep their template */
	T_ERR("openai.BadRequestError: Error code: 400 - {'error': {'message': "
	      "'too long: hello', 'type': 'invalid_request_error', 'param': "
	      "'messages', 'code': 'context_length_exceeded'}}",
	      0,
	      "openai.BadRequestError: Error code: 400 - {'error': {'message': "
	      "<str:15>, 'type': 'invalid_request_error', 'param': "
	      "'messages', 'code': 'context_length_exceeded'}}");
	T_ERR("KeyError: 'string' while handling {'MsgId': 1, 'Body': 'hi'}", 0,
	      "KeyError: <str:6> while handling <dict:26>");
	T_ERR("ValueError: bad {\"a\": \"b\"} and ['x', 'y'] and (1, 'z')", 0,
	      "ValueError: bad <json:10> and <list:10> and <tuple:8>");
	T_ERR("RuntimeError: x at https://api.example.com/v1/users/42?q=me", 0,
	      "RuntimeError: x at https://api.example.com<path:17>");
	T_ERR("RuntimeError: see https://errors.pydantic.dev/2.9/v/missing", 0,
	      "RuntimeError: see https://errors.pydantic.dev/2.9/v/missing");
	T_ERR(
	    "E: Input [type=missing, input_value={'a': 'b'}, input_type=dict]",
	    0,
	    "E: Input [type=missing, input_value=<dict:10>, input_type=dict]");
	T_ERR("ActionFailed: ActionFailed(retcode=1200, message='x y', "
	      "echo=None)",
	      0,
	      "ActionFailed: ActionFailed(retcode=1200, message=<str:3>, "
	      "echo=None)");
	T_ERR("ParseError: in <xml><To><![CDATA[ab]]></To></xml>", 0,
	      "ParseError: in <xml><xml:29>");
	/* an XML start with no '>' after it runs to the line's end (a fuzz
	 * find: this once never advanced) */
	T_ERR("E: x <?xml version\nValueError: <![CDATA[ab", 0,
	      "E: x <xml:13>\nValueError: <xml:11>");
	T_ERR("AttributeError: 'NoneType' object has no attribute 'x'", 0,
	      "AttributeError: 'NoneType' object has no attribute <str:1>");
	T_ERR("E: trace a1b2c3d4e5f6a7b8c9d0e1f2 at 0x7f3a2b1c4d5e6f70", 0,
	      "E: trace <id> at 0x7f3a2b1c4d5e6f70");
	T_ERR("HTTPStatusError: Client error '403 Forbidden' for url 'x'", 0,
	      "HTTPStatusError: Client error '403 Forbidden' for url <str:1>");
	T_ERR("E: login failed, password: two words, token='abc'", 0,
	      "E: login failed, password: <redacted:password>, "
	      "token='<redacted:token>'");
	/* a key cut short by a space or a wrapped line, in a message */
	T_ERR("E: see sk-proj-Ab3dEf6h Ij9kLm2n", 0,
	      "E: see <redacted:api_key> Ij9kLm2n");
	T_ERR("E: sk-learn-0.24 app-config-2 app-v2-release-2024", 0,
	      "E: sk-learn-0.24 app-config-2 app-v2-release-2024");
	T_ERR("E: echostr=P9nAzC/qYX3+4RPcs==, nonce=13", 0,
	      "E: echostr=<val:19>, nonce=13");
	T_ERR("E: long <str:1.2k> and <json:15k> stay", 0,
	      "E: long <str:1.2k> and <json:15k> stay");
	/* evasive forms are undone before the patterns */
	T_ERR("E: s\xe2\x80\x8bk-proj-Ab3dEf6hIj9kLm2nOp5qRs8tUv1wXy4z", 0,
	      "E: <redacted:api_key>");
	T_ERR("E: \xef\xbc\x91\xef\xbc\x93\xef\xbc\x99\xef\xbc\x91\xef\xbc\x92"
	      "\xef\xbc\x93\xef\xbc\x94\xef\xbc\x95\xef\xbc\x96\xef\xbc\x97"
	      "\xef\xbc\x98",
	      0, "E: <redacted:phone>");
	T_ERR("E: %73%6b-proj-Ab3dEf6hIj9kLm2nOp5qRs8tUv1wXy4z", 0,
	      "E: <redacted:api_key>");
	T_ERR("E: s\xd0\xba-proj-Ab3dEf6hIj9kLm2nOp5qRs8tUv1wXy4z", 0,
	      "E: <redacted:api_key>");
	T_ERR("Ошибка: сервер недоступен", 0, "Ошибка: сервер недоступен");

	/* strict: frames and type names, whatever wraps them */
	T_ERR("Jane.Doe: hello there\nValueError: x", 1, "ValueError");
	T_ERR("Traceback (most recent call last):\n"
	      "  File \"asyncpg/protocol/protocol.pyx\", line 165, in bind\n"
	      "  my secret words\n"
	      "asyncpg.exceptions.DataError: invalid input 'x'",
	      1,
	      "Traceback (most recent call last):\n"
	      "  File \"asyncpg/protocol/protocol.pyx\", line 165, in bind\n"
	      "asyncpg.exceptions.DataError");
	T_ERR("  | ExceptionGroup: unhandled errors (1 sub-exception)\n"
	      "  +-+---------------- 1 ----------------\n"
	      "    | Traceback (most recent call last):\n"
	      "    |   File \"a.py\", line 1, in f\n"
	      "    |     g()\n"
	      "    | ValueError: user text\n"
	      "    |   continued user text\n"
	      "    +------------------------------------",
	      1,
	      "  | ExceptionGroup\n"
	      "  +-+---------------- 1 ----------------\n"
	      "    | Traceback (most recent call last):\n"
	      "    |   File \"a.py\", line 1, in f\n"
	      "    |     g()\n"
	      "    | ValueError\n"
	      "    +------------------------------------");
}

/* ---- cleaning ----------------------------------------------------------- */

/* Text stored for reading and never sent (clean.h): every invalid byte
 * is one U+FFFD, controls stay, the cap falls on a character boundary. */
static void test_display(void)
{
	static const struct {
		const char *in;
		size_t max;
		const char *want;
	} cases[] = {
	    {"a\xe4\xbdz", 100, "a\xef\xbf\xbd\xef\xbf\xbdz"},
	    {"l1\r\n\x01\x7f\xc2\x85", 100, "l1\r\n\x01\x7f\xc2\x85"},
	    {"ab\xe4\xbd\xa0", 4, "ab"},
	    {"ab\xe4\xbd\xa0", 5, "ab\xe4\xbd\xa0"},
	    {"\xff", 2, ""},
	    {"\xed\xa0\x80", 100, "\xef\xbf\xbd\xef\xbf\xbd\xef\xbf\xbd"},
	    {NULL, 10, ""},
	};
	for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
		char *o = telespool__clean_display(cases[i].in, cases[i].max);
		check_eq(__LINE__, "clean_display",
			 cases[i].in ? cases[i].in : "(null)", o,
			 cases[i].want);
		free(o);
	}

	/* Space's survey: \u0000 goes, keys and strings become valid
	 * UTF-8; what is not an object is refused, without oom. */
	int oom = -1;
	char *v = telespool__clean_survey(
	    "{\"id\": \"s1\", \"q\": \"a\\u0000b\xff\"}", &oom);
	check_eq(__LINE__, "clean_survey", "a survey", v,
		 "{\"id\":\"s1\",\"q\":\"ab\xef\xbf\xbd\"}");
	ASSERT_EQ(oom, 0);
	cJSON_free(v);
	oom = -1;
	v = telespool__clean_survey("[1, 2]", &oom);
	ASSERT_TRUE(v == NULL);
	ASSERT_EQ(oom, 0);
	cJSON_free(v);
}

static void test_cleaning(void)
{
	static const char nul[] = "a\0b";
	static const char fffd[] = "\xef\xbf\xbd";

	T_TEXT_N(nul, 3, "ab");
	T_TEXT_N("\xff", 1, "\xef\xbf\xbd");
	T_TEXT_N("a\xc0\xafz", 4,
		 "a\xef\xbf\xbd\xef\xbf\xbdz"); /* overlong '/' */
	T_TEXT_N("\xe0\x80\xaf", 3,
		 "\xef\xbf\xbd\xef\xbf\xbd\xef\xbf\xbd"); /* overlong */
	T_TEXT_N("\xed\xa0\x80x", 4,
		 "\xef\xbf\xbd\xef\xbf\xbd\xef\xbf\xbdx"); /* surrogate */
	T_TEXT_N(
	    "\xf4\x90\x80\x80", 4,
	    "\xef\xbf\xbd\xef\xbf\xbd\xef\xbf\xbd\xef\xbf\xbd"); /* > U+10FFFF */
	T_TEXT_N(
	    "\xf8\x88\x80\x80\x80", 5,
	    "\xef\xbf\xbd\xef\xbf\xbd\xef\xbf\xbd\xef\xbf\xbd\xef\xbf\xbd");
	T_TEXT_N("\xe4\xbd", 2, "\xef\xbf\xbd");   /* cut short at the end */
	T_TEXT_N("\xe4\xbdx", 3, "\xef\xbf\xbdx"); /* cut short, then ASCII */
	T_TEXT_N("\xf0\x9f\x98", 3, "\xef\xbf\xbd");
	T_TEXT_N("\x80\xbf", 2, "\xef\xbf\xbd\xef\xbf\xbd");
	T_TEXT_N("\xf0\x9f\x98\x80\xf4\x8f\xbf\xbf", 8,
		 "\xf0\x9f\x98\x80\xf4\x8f\xbf\xbf");
	T_TEXT_N("\xef\xbf\xbd", 3, fffd);
	T_TEXT("a\x01\x1b[31mb\x7f", "a[31mb");
	T_TEXT("l1\r\nl2\rl3\n\tx\x0b\x0c", "l1\nl2l3\n\tx");
	T_TEXT("a\xc2\x85"
	       "b\xc2\x9f"
	       "c\xc2\xa0"
	       "d",
	       "abc\xc2\xa0"
	       "d");
	T_TEXT_N(NULL, 0, "");
	T_TEXT_N(NULL, 99, "");
	T_TEXT_N("", 0, "");

	T_NAME("  TelegramAdapter \n", 128, "TelegramAdapter");
	T_NAME("\t gpt-4o\t", 128, "gpt-4o");
	T_NAME("local-agent", 128, "local-agent");
	T_NAME("deepseek-chat", 128, "deepseek-chat");
	T_NAME("v4.3.1", 128, "v4.3.1");
	T_NAME("3f2b9c1e-8d4a-4e6f-9b2c-1a2b3c4d5e6f", 128,
	       "3f2b9c1e-8d4a-4e6f-9b2c-1a2b3c4d5e6f");
	T_NAME("instance_3f2b9c1e-8d4a-4e6f-9b2c-1a2b3c4d5e6f", 128,
	       "instance_3f2b9c1e-8d4a-4e6f-9b2c-1a2b3c4d5e6f");
	T_NAME("Qwen/Qwen2.5-72B-Instruct", 128, "Qwen/Qwen2.5-72B-Instruct");
	T_NAME("ep-20240607123456-abcde", 128, "ep-20240607123456-abcde");
	T_NAME("a\tb\nc\rd\x7f"
	       "e\xc2\x80"
	       "f",
	       128, "abcdef");
	T_NAME("\xc2\xa0\xe3\x80\x80name\xe2\x80\x83\xef\xbb\xbf", 128, "name");
	T_NAME("in ner", 128, "in ner");
	T_NAME("ab\xe4\xb8\xad", 4, "ab"); /* never half a character */
	T_NAME("ab\xe4\xb8\xad", 5, "ab\xe4\xb8\xad");
	T_NAME("a b", 2, "a"); /* trimmed again after the cap */
	T_NAME("anything", 0, "");
	T_NAME("   ", 128, "");
	T_NAME("sk-proj-Ab3dEf6hIj9kLm2nOp5qRs8tUv1wXy4z", 128,
	       "<redacted:api_key>");
	T_NAME("sk-proj-Ab3dEf6hIj9kLm2nOp5qRs8tUv1wXy4z", 10,
	       ""); /* no half placeholder */
	T_NAME("m sk-proj-Ab3dEf6hIj9kLm2nOp5qRs8tUv1wXy4z", 12, "m");
	T_NAME("alice@example.com", 128, "<redacted:email>");
	T_NAME_N(NULL, 0, 128, "");
	T_NAME_N(NULL, 10, 128, "");
	T_NAME_N(nul, 3, 128, "ab");
	T_NAME_N("\xff\xfe", 2, 128, "\xef\xbf\xbd\xef\xbf\xbd");
}

/* ---- truncation --------------------------------------------------------- */

static char *repeat(const char *unit, size_t times)
{
	size_t ul = strlen(unit), k;
	char *s = malloc(ul * times + 1);

	if (!s)
		abort();
	for (k = 0; k < times; k++)
		memcpy(s + k * ul, unit, ul);
	s[ul * times] = '\0';
	return s;
}

static void test_truncation(void)
{
	static const size_t caps[] = {0,   1,   2,    3,    5,     8,    13,
				      20,  31,  40,   47,   63,    64,   65,
				      71,  72,  80,   100,  128,   200,  255,
				      256, 500, 1000, 4096, 10000, 49152};
	char *body, *big, *full, *o, *p;
	size_t k, n, fl, len;
	int ok;

	/* a long traceback: head frames, many middle frames, the exception */
	body = repeat(
	    "  File \"/app/pkg/mid.py\", line 10, in middle\n    x = y\n",
	    2000);
	n = strlen(body) + 200;
	big = malloc(n);
	if (!big)
		abort();
	snprintf(big, n,
		 "Traceback (most recent call last):\n%s"
		 "openai.APIConnectionError: Connection error.",
		 body);
	full = text(big, SIZE_MAX, 0);
	fl = strlen(full);
	for (k = 0; k < sizeof caps / sizeof caps[0]; k++) {
		o = telespool__clean_text(big, strlen(big), caps[k], 0, &len);
		ASSERT_TRUE(o != NULL);
		if (!o)
			continue;
		if (len > caps[k] || !tc_valid_utf8(o, len) || strlen(o) != len)
			TU_FAIL("cap %zu: len %zu, valid %d", caps[k], len,
				tc_valid_utf8(o, len));
		else
			tu_passed++;
		if (caps[k] >= 200) {
			size_t cut;

			ASSERT_CONTAINS(o,
					"Traceback (most recent call last):\n");
			ASSERT_CONTAINS(
			    o,
			    "\nopenai.APIConnectionError: Connection error.");
			ASSERT_CONTAINS(o, " bytes truncated] ...\n");
			/* the marker tells exactly how much went */
			p = strstr(o, "\n... [telespool: ");
			ASSERT_TRUE(p != NULL);
			if (p) {
				size_t ml =
				    (size_t)(strstr(p, "] ...\n") + 6 - p);

				cut = strtoul(p + 17, NULL, 10);
				ASSERT_EQ(cut, fl - (len - ml));
				/* head and tail are whole lines */
				ASSERT_TRUE(p == o ||
					    strncmp(p - 1, "\n", 1) != 0);
				ASSERT_TRUE(
				    strncmp(p + ml, "  File ", 7) == 0 ||
				    strncmp(p + ml, "    x = y", 9) == 0);
			}
		}
		free(o);
	}
	/* the tail is the bigger part: the exception is at the end */
	o = text(big, 4096, 0);
	p = strstr(o, "\n... [telespool:");
	ASSERT_TRUE(p && (size_t)(p - o) < 1200);
	free(o);
	free(full);
	free(big);
	free(body);

	/* placeholders are never cut in half, whatever the cap */
	big = repeat("10.1.2.3 \xe4\xb8\xad\n", 300);
	for (n = 0; n <= 700; n++) {
		o = telespool__clean_text(big, strlen(big), n, 0, &len);
		ok = o && len <= n && tc_valid_utf8(o, len) &&
		     tc_placeholders_whole(o);
		if (ok) {
			/* every token outside the marker is whole */
			char *q = o, *tok;

			while ((tok = strstr(q, "ip>")) != NULL) {
				if (tok < o + 10 ||
				    strncmp(tok - 10, "<redacted:", 10) != 0)
					ok = 0;
				q = tok + 3;
			}
			for (q = o; (q = strchr(q, '<')) != NULL; q++)
				if (strncmp(q, "<redacted:ip>", 13) != 0)
					ok = 0;
			if (o[0] == 'p' || o[0] == '>' || o[0] == ':')
				ok = 0;
		}
		if (ok)
			tu_passed++;
		else
			TU_FAIL("cap %zu: \"%s\"", n, o ? o : "(null)");
		free(o);
	}
	free(big);

	/* never half a character, no newline anywhere to cut at */
	big = repeat("\xe4\xb8\xad\xf0\x9f\x98\x80", 500);
	for (n = 0; n <= 400; n++) {
		o = telespool__clean_text(big, strlen(big), n, 0, &len);
		if (o && len <= n && tc_valid_utf8(o, len))
			tu_passed++;
		else
			TU_FAIL("cap %zu: len %zu", n, len);
		free(o);
	}
	free(big);

	/* a secret cut by the cap cannot leak: redaction comes first */
	body = repeat("Zq9", 3000);
	n = strlen(body) + 64;
	big = malloc(n * 2);
	if (!big)
		abort();
	snprintf(big, n * 2, "head\nkey sk-%s tail\nValueError: bad key", body);
	for (k = 0; k < sizeof caps / sizeof caps[0]; k++) {
		o = text(big, caps[k], 0);
		ASSERT_TRUE(o && !strstr(o, "Zq9") && strlen(o) <= caps[k]);
		free(o);
		o = telespool__clean_name(big, strlen(big), caps[k]);
		ASSERT_TRUE(o && !strstr(o, "Zq9") && strlen(o) <= caps[k]);
		free(o);
	}
	free(big);
	free(body);
}

/* ---- property test ------------------------------------------------------ */

static uint64_t rng_state = 0x9e3779b97f4a7c15ull;

static uint64_t rnd(void)
{
	/* xorshift64*: fixed seed, the same inputs on every run */
	rng_state ^= rng_state >> 12;
	rng_state ^= rng_state << 25;
	rng_state ^= rng_state >> 27;
	return rng_state * 0x2545f4914f6cdd1dull;
}

static size_t rnd_below(size_t n)
{
	return n ? (size_t)(rnd() % n) : 0;
}

/* Secrets as they would appear, and the part of each that must go. */
static const char *const secrets[][2] = {
    {"sk-proj-Ab3dEf6hIj9kLm2nOp5qRs8tUv1wXy4z", "Ab3dEf6hIj9k"},
    {"sk-ant-api03-R2D2c3po_Vb8xQ1fKz7LmNp", "R2D2c3po"},
    {"AIzaSyA1bC2dE3fG4hI5jK6lM7nO8pQ9rS0tU1v", "SyA1bC2dE3"},
    {"eyJhbGciOiJIUzI1NiJ9.eyJzdWIiOiIxMjM0NTY3ODkwIn0.dozjgNryP4J3jV",
     "dozjgNryP4J3jV"},
    {"AKIAIOSFODNN7EXAMPLE", "IOSFODNN7EXAMPLE"},
    {"ghp_1234567890abcdefghijABCDEFGHIJ123456", "abcdefghijABCDEFGHIJ"},
    {"glpat-AbCdEf1234567890xYzW", "AbCdEf1234567890"},
    {"xoxb-123456789012-AbCdEfGhIjKl", "AbCdEfGhIjKl"},
    {"-----BEGIN PRIVATE KEY-----\nMIIEvQIBADANBgkqhkiG9w0BAQEFAASC\n"
     "-----END PRIVATE KEY-----",
     "MIIEvQIBADANBgkqhkiG9w0"},
    {"Bearer Rf9xYb3ZkQ7wLm2Np5Tv", "Rf9xYb3ZkQ7wLm2Np5Tv"},
    {"password=Hunt3rTw0", "Hunt3rTw0"},
    {"'client_secret': 'CsXy9876Qw'", "CsXy9876Qw"},
    {"postgresql://lb:PgPw5544@db:5432/x", "PgPw5544"},
    {"alice.w@example.com", "alice.w"},
    {"+1 415 555 0100", "555 0100"},
    {"13912345678", "13912345678"},
    {"138 1234 5678", "1234 5678"},
    {"987654321", "987654321"},
    {"-1001234567890", "1001234567890"},
    {"/home/mallory/x", "mallory"},
    {"C:\\Users\\trent\\x", "trent"},
    {"203.0.113.77:8080", "203.0.113.77"},
    {"2001:db8:85a3::8a2e:370:7334", "8a2e:370:7334"},
    {"7123456789:AAHdqTcvCH1vGWJxfSeofSAs0K5PALDsaw1", "AAHdqTcvCH1vGWJx"},
};

/* Things that are tricky next to them. */
static const char *const fillers[] = {
    "Traceback (most recent call last):",
    "  File \"/app/x.py\", line 12, in f",
    "v4.3.1",
    "3.11.7",
    "0x7f3a2b",
    "550e8400-e29b-41d4-a716-446655440000",
    "httpx.ConnectError:",
    "sk-",
    "@",
    "://",
    "-----BEGIN",
    "eyJ",
    "::",
    "+",
    "password",
    "=",
    ":",
    "'",
    "\"",
    "\\",
    "/home/",
    "C:\\Users\\",
    "123",
    "1.2",
    "Bearer",
    "\xe4\xb8\xad\xe6\x96\x87",
    "\xf0\x9f\x98\x80",
    "\xff",
    "\xc0\xaf",
    "\xed\xa0\x80",
    "\xe4\xbd",
    "\0",
    "\r\n",
    "\x1b[0m",
    "\xc2\x85",
    "<redacted:",
    "During handling of the above exception, another exception occurred:",
};

static const char *const seps[] = {
    " ",   "\n",  ", ", "\t",  " (", ") ", " '",  "' ",
    " \"", "\" ", "; ", " | ", " [", "] ", " = ", ": ",
};

/* Prints a byte string with escapes, for a failure report. */
static void dump(const char *what, const char *s, size_t n)
{
	size_t k;

	fprintf(stderr, "  %s: \"", what);
	for (k = 0; k < n; k++) {
		unsigned char c = (unsigned char)s[k];

		if (c == '\\' || c == '"')
			fprintf(stderr, "\\%c", c);
		else if (c >= 0x20 && c < 0x7f)
			fputc(c, stderr);
		else
			fprintf(stderr, "\\x%02x", c);
	}
	fprintf(stderr, "\"\n");
}

#define NSEC (sizeof secrets / sizeof secrets[0])

static void test_property(void)
{
	char *in = malloc(8192);
	size_t round, len, k, cap, olen, used[8], nused;
	int strict, fails = 0;
	char *o;

	if (!in)
		abort();
	for (round = 0; round < 20000 && fails < 10; round++) {
		int kind = (int)rnd_below(3);

		len = 0;
		nused = 0;
		if (kind == 0) {
			/* random bytes, biased towards the interesting ones */
			size_t n = rnd_below(1500);
			static const char hot[] =
			    "\0\n\r\t @:=/.-+<>'\"\\0123456789sk"
			    "eyJAKIA\xe4\xb8\xad\xff\xc2\x85";

			for (k = 0; k < n; k++)
				in[len++] =
				    rnd_below(2)
					? (char)rnd_below(256)
					: hot[rnd_below(sizeof hot - 1)];
		} else {
			/* tokens: secrets and fillers with separators (kind 2 never
			 * glues two tokens, so every secret must go) */
			size_t parts = 1 + rnd_below(40);

			for (k = 0; k < parts && len < 7000; k++) {
				const char *t, *sp;

				if (rnd_below(3) == 0 && nused < 8) {
					size_t si = rnd_below(NSEC);

					t = secrets[si][0];
					if (kind == 2)
						used[nused++] = si;
				} else if (kind == 1 || rnd_below(2)) {
					t = fillers[rnd_below(
					    sizeof fillers /
					    sizeof fillers[0])];
				} else {
					t = "word";
				}
				memcpy(in + len, t, t[0] ? strlen(t) : 1);
				len += t[0] ? strlen(t) : 1;
				sp = seps[rnd_below(sizeof seps /
						    sizeof seps[0])];
				if (kind == 2)
					sp = rnd_below(2) ? " " : "\n";
				memcpy(in + len, sp, strlen(sp));
				len += strlen(sp);
			}
		}
		cap = rnd_below(4) == 0 ? rnd_below(300) : CAP;
		strict = rnd_below(4) == 0;
		o = telespool__clean_text(in, len, cap, strict, &olen);
		if (!o || olen > cap || strlen(o) != olen ||
		    !tc_valid_utf8(o, olen) || !tc_no_controls(o, olen, 1)) {
			fails++;
			TU_FAIL(
			    "round %zu: clean_text cap %zu strict %d: len %zu",
			    round, cap, strict, o ? olen : 0);
		} else if (kind == 2 && cap == CAP) {
			char *g =
			    telespool__clean_error(in, len, cap, strict, NULL);

			for (k = 0; k < nused; k++)
				if (strstr(o, secrets[used[k]][1]) || !g ||
				    strstr(g, secrets[used[k]][1])) {
					fails++;
					TU_FAIL("round %zu: leaked \"%s\" in "
						"\"%s\" or \"%s\"",
						round, secrets[used[k]][1], o,
						g ? g : "(null)");
					dump("input", in, len);
					break;
				}
			if (k == nused)
				tu_passed++;
			free(g);
		} else {
			tu_passed++;
		}
		free(o);

		cap = rnd_below(2) ? rnd_below(200) : TELESPOOL_NAME_MAX;
		o = telespool__clean_name(in, len % 300, cap);
		olen = o ? strlen(o) : 0;
		if (!o || olen > cap || !tc_valid_utf8(o, olen) ||
		    !tc_no_controls(o, olen, 0) ||
		    (olen && (o[0] == ' ' || o[olen - 1] == ' '))) {
			fails++;
			TU_FAIL("round %zu: clean_name cap %zu: \"%s\"", round,
				cap, o ? o : "(null)");
		} else {
			tu_passed++;
		}
		free(o);
	}
	free(in);
}

/* ---- speed: linear on adversarial input, and the hot path --------------- */

static double now(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (double)ts.tv_sec + (double)ts.tv_nsec / 1e9;
}

static void test_adversarial(void)
{
	static const char *const units[] = {
	    "1",
	    "@",
	    "sk-",
	    "-----BEGIN ",
	    "-----BEGIN PRIVATE KEY-----",
	    ":",
	    "::",
	    "a@",
	    "a.",
	    "eyJaaaaaaaaaaaa-",
	    "://a",
	    "a://",
	    "token=x(",
	    "password=",
	    "'password': '",
	    "+1 ",
	    "1.",
	    "1:",
	    "/home/",
	    "\\Users\\",
	    "Bearer ",
	    "-----END ",
	    "aaaaaaaaaaaaaaaaaaaaaaaa.",
	    "MTAx",
	    "\xff",
	    "  File \"",
	    "a:a=",
	    "\"",
	    "\\\"",
	    "eyJ",
	    "person_1",
	    "{",
	    "[",
	    "(",
	    "{'error': ",
	    "'a",
	    "\"",
	    "\\\\\"",
	    "<a>",
	    "<a></",
	    "x=",
	    "code: ",
	    "https://h/",
	    "data:a/b,",
	    "%41",
	    "\xef\xbc\x91",
	    "\xe2\x80\x8b",
	    "\xd0\xba\x31",
	    "a(b, ",
	};
	size_t k, len;
	double t0, dt, worst = 0;
	/* linear is milliseconds, 50 times that under valgrind; quadratic
	 * on 1 MB would be minutes, hours under valgrind */
	double limit = getenv("TELESPOOL_UNDER_VALGRIND") ? 60.0 : 5.0;
	char *big, *o;

	for (k = 0; k < sizeof units / sizeof units[0]; k++) {
		big = repeat(units[k], (1u << 20) / strlen(units[k]));
		t0 = now();
		o = telespool__clean_text(big, strlen(big), CAP, (int)(k & 1),
					  &len);
		dt = now() - t0;
		if (dt > worst)
			worst = dt;
		if (o && len <= CAP && tc_valid_utf8(o, len) && dt < limit)
			tu_passed++;
		else
			TU_FAIL("1 MB of \"%s\": %.3f s", units[k], dt);
		free(o);
		/* the guard too, on one line and on many */
		t0 = now();
		o = telespool__clean_error(big, strlen(big), CAP, (int)(k & 1),
					   &len);
		dt = now() - t0;
		if (dt > worst)
			worst = dt;
		if (o && len <= CAP && tc_valid_utf8(o, len) && dt < limit)
			tu_passed++;
		else
			TU_FAIL("clean_error, 1 MB of \"%s\": %.3f s", units[k],
				dt);
		free(o);
		/* a hostile name */
		t0 = now();
		o = telespool__clean_name(big, strlen(big), TELESPOOL_NAME_MAX);
		dt = now() - t0;
		ASSERT_TRUE(o && strlen(o) <= TELESPOOL_NAME_MAX && dt < limit);
		free(o);
		free(big);
	}
	printf("adversarial 1 MB inputs: slowest %.2f ms\n", worst * 1e3);
}

static void report_speed(const char *sample, size_t sample_len)
{
	static const char *const names[] = {
	    "TelegramAdapter",
	    "local-agent",
	    "gpt-4o-2024-08-06",
	    "deepseek-chat",
	};
	size_t calls = 0, k, len, unit = 0;
	double t0, dt;
	char *big, *o;

	t0 = now();
	do {
		for (k = 0; k < 1000; k++) {
			o = telespool__clean_name(names[k & 3],
						  strlen(names[k & 3]),
						  TELESPOOL_NAME_MAX);
			free(o);
		}
		calls += 1000;
		dt = now() - t0;
	} while (dt < 0.2);
	printf("clean_name, 11-17 byte names: %.0f ns/call\n",
	       dt / (double)calls * 1e9);

	/* a realistic 1 MB: the corpus repeated */
	big = malloc((1u << 20) + sample_len + 1);
	if (!big)
		abort();
	len = 0;
	while (len < (1u << 20)) {
		memcpy(big + len, sample, sample_len);
		len += sample_len;
		unit++;
	}
	calls = 0;
	t0 = now();
	do {
		o = telespool__clean_text(big, len, CAP, 0, NULL);
		ASSERT_TRUE(o != NULL);
		free(o);
		calls++;
		dt = now() - t0;
	} while (dt < 0.2);
	printf("clean_text, %.2f MB of tracebacks: %.2f ms/call\n",
	       (double)len / (1 << 20), dt / (double)calls * 1e3);
	calls = 0;
	t0 = now();
	do {
		o = telespool__clean_error(big, len, CAP, 0, NULL);
		ASSERT_TRUE(o != NULL);
		free(o);
		calls++;
		dt = now() - t0;
	} while (dt < 0.2);
	printf("clean_error, %.2f MB of tracebacks: %.2f ms/call\n",
	       (double)len / (1 << 20), dt / (double)calls * 1e3);
	/* the benchmark's case: one 10 KiB traceback */
	for (k = 0; k < 2; k++) {
		calls = 0;
		t0 = now();
		do {
			o = k ? telespool__clean_error(big, 10240, CAP, 0, NULL)
			      : telespool__clean_text(big, 10240, CAP, 0, NULL);
			free(o);
			calls++;
			dt = now() - t0;
		} while (dt < 0.2);
		printf("%s, a 10 KiB traceback: %.1f us/call\n",
		       k ? "clean_error" : "clean_text",
		       dt / (double)calls * 1e6);
	}
	free(big);
}

/* ---- corpus ------------------------------------------------------------- */

static char *slurp(const char *path, size_t *len)
{
	FILE *f = fopen(path, "rb");
	char *buf = NULL;
	size_t cap = 0, n = 0, r;

	if (!f)
		return NULL;
	do {
		if (n + 4096 + 1 > cap) {
			char *nb = realloc(buf, cap = cap * 2 + 8192);

			if (!nb)
				abort();
			buf = nb;
		}
		r = fread(buf + n, 1, cap - n - 1, f);
		n += r;
	} while (r > 0);
	fclose(f);
	buf[n] = '\0';
	if (len)
		*len = n;
	return buf;
}

/* Calls fn(line) for each non-empty line of path; returns how many, -1 if none. */
static int each_line(const char *path, const char *out, const char *name,
		     int must_have)
{
	char *all = slurp(path, NULL), *line, *save = NULL;
	int count = 0;

	if (!all)
		return -1;
	for (line = strtok_r(all, "\n", &save); line;
	     line = strtok_r(NULL, "\n", &save)) {
		if (!*line)
			continue;
		count++;
		if ((strstr(out, line) != NULL) == must_have) {
			tu_passed++;
		} else {
			tu_failed++;
			fprintf(stderr, "corpus %s: \"%s\" %s\n", name, line,
				must_have ? "is missing" : "leaked");
		}
	}
	free(all);
	return count;
}

static void test_corpus(const char *dir, char **sample, size_t *sample_len)
{
	DIR *d = dir ? opendir(dir) : NULL;
	struct dirent *de;
	char path[4096], name[256];
	int files = 0;
	size_t sl = 0;

	*sample = NULL;
	*sample_len = 0;
	if (!d) {
		TU_FAIL("cannot open corpus directory %s",
			dir ? dir : "(none)");
		return;
	}
	while ((de = readdir(d)) != NULL) {
		size_t nl = strlen(de->d_name), len, olen, cap;
		char *in, *plain, *strict, *small;

		if (nl < 5 || nl >= sizeof name ||
		    strcmp(de->d_name + nl - 4, ".txt") != 0)
			continue;
		memcpy(name, de->d_name, nl - 4);
		name[nl - 4] = '\0';
		snprintf(path, sizeof path, "%s/%s", dir, de->d_name);
		in = slurp(path, &len);
		if (!in)
			continue;
		files++;
		plain = telespool__clean_text(in, len, CAP, 0, &olen);
		strict = telespool__clean_text(in, len, CAP, 1, NULL);
		ASSERT_TRUE(plain && strict && tc_valid_utf8(plain, olen));
		if (!plain || !strict)
			goto next;

		/* the secrets are really in the input, and gone from both outputs */
		snprintf(path, sizeof path, "%s/%s.secrets", dir, name);
		if (each_line(path, in, name, 1) <= 0)
			TU_FAIL("corpus %s: no .secrets", name);
		each_line(path, plain, name, 0);
		each_line(path, strict, name, 0);
		/* what makes the traceback useful is still there, strict too */
		snprintf(path, sizeof path, "%s/%s.keep", dir, name);
		if (each_line(path, plain, name, 1) <= 0)
			TU_FAIL("corpus %s: no .keep", name);
		each_line(path, strict, name, 1);
		/* cleaning what is clean changes nothing */
		{
			char *again = telespool__clean_text(
			    plain, strlen(plain), CAP, 0, NULL);

			if (again && strcmp(again, plain) == 0)
				tu_passed++;
			else
				TU_FAIL(
				    "corpus %s: not idempotent:\n%s\n---\n%s",
				    name, plain, again ? again : "(null)");
			free(again);
		}
		/* message text that only strict mode removes */
		snprintf(path, sizeof path, "%s/%s.strict-secrets", dir, name);
		if (each_line(path, plain, name, 1) > 0)
			each_line(path, strict, name, 0);

		/* capped: still no secret, within the cap, the exception kept */
		for (cap = 256; cap <= 2048; cap *= 2) {
			small = telespool__clean_text(in, len, cap, 0, &olen);
			ASSERT_TRUE(small && olen <= cap &&
				    tc_valid_utf8(small, olen) &&
				    tc_placeholders_whole(small));
			if (small) {
				snprintf(path, sizeof path, "%s/%s.secrets",
					 dir, name);
				each_line(path, small, name, 0);
				/* the last line of the uncapped output ends this one too */
				if (olen < strlen(plain)) {
					const char *last = strrchr(plain, '\n');

					last = last ? last + 1 : plain;
					if (strlen(last) < cap / 2)
						ASSERT_CONTAINS(small, last);
				}
			}
			free(small);
		}
		if (!*sample) {
			*sample = plain;
			sl = strlen(plain);
			plain = NULL;
		}
	next:
		free(plain);
		free(strict);
		free(in);
	}
	closedir(d);
	*sample_len = sl;
	if (files >= 8)
		tu_passed++;
	else
		TU_FAIL("corpus %s: %d tracebacks, want at least 8", dir,
			files);
}

/* ---- the error corpus: leaks and losses per kind ------------------------ */

/*
 * tests/corpus/errors: NAME.txt is a traceback as users paste them, with
 * secrets, identities and message content planted; NAME.items lists, one
 * per line, "leak KIND TEXT" (must be gone from clean_error's output in
 * both modes) and "keep KIND TEXT" (must survive; kinds frame, type and
 * source in both modes, code, status and message in the default mode only, since
 * strict_errors drops every message).  Files named evasive_* hold the
 * evasive variants, counted apart.  The figures per kind are printed; the
 * targets: no leak from a real traceback, at most 5 % (default) and 2 %
 * (strict) of the evasive ones, and at least 97 % of debug items kept.
 */
#define NKINDS 32

struct kstat {
	char kind[24];
	int keep;       /* 1: a debug item, 0: a planted one */
	int evasive;    /* from an evasive_* file */
	int n, miss[2]; /* planted or kept; leaked or lost per mode */
};

static struct kstat kstats[NKINDS];
static int nkstats;

/* the review_* files (written after the guard, by another hand): their
 * own totals, [keep][mode] */
static int rv_files, rv_n[2], rv_miss[2][2], rv_nostrict;

static struct kstat *kstat_for(const char *kind, int keep, int evasive)
{
	int k;

	for (k = 0; k < nkstats; k++)
		if (kstats[k].keep == keep && kstats[k].evasive == evasive &&
		    strcmp(kstats[k].kind, kind) == 0)
			return &kstats[k];
	if (nkstats == NKINDS)
		abort();
	snprintf(kstats[nkstats].kind, sizeof kstats[0].kind, "%s", kind);
	kstats[nkstats].keep = keep;
	kstats[nkstats].evasive = evasive;
	return &kstats[nkstats++];
}

static void errors_file(const char *dir, const char *name, int *files)
{
	char path[4096], *in, *out[2], *items, *line, *save = NULL;
	size_t len, olen;
	int evasive = strncmp(name, "evasive_", 8) == 0, mode;
	int review = strncmp(name, "review_", 7) == 0;

	snprintf(path, sizeof path, "%s/%s.txt", dir, name);
	in = slurp(path, &len);
	snprintf(path, sizeof path, "%s/%s.items", dir, name);
	items = slurp(path, NULL);
	if (!in || !items) {
		TU_FAIL("corpus %s: no .txt or .items", name);
		free(in);
		free(items);
		return;
	}
	(*files)++;
	rv_files += review;
	for (mode = 0; mode < 2; mode++) {
		out[mode] = telespool__clean_error(in, len, CAP, mode, &olen);
		ASSERT_TRUE(out[mode] && tc_valid_utf8(out[mode], olen) &&
			    tc_no_controls(out[mode], olen, 1) &&
			    tc_placeholders_whole(out[mode]));
		if (!out[mode])
			out[mode] = strdup("");
		else {
			/* cleaning what is clean changes nothing */
			char *again = telespool__clean_error(out[mode], olen,
							     CAP, mode, NULL);

			if (again && strcmp(again, out[mode]) == 0)
				tu_passed++;
			else
				TU_FAIL("corpus %s: not idempotent (strict "
					"%d):\n%s\n---\n%s",
					name, mode, out[mode],
					again ? again : "(null)");
			free(again);
		}
	}
	if (getenv("TEST_REDACT_SHOW"))
		printf("==== %s\n%s\n---- strict\n%s\n", name, out[0], out[1]);
	for (line = strtok_r(items, "\n", &save); line;
	     line = strtok_r(NULL, "\n", &save)) {
		char *kind, *text;
		int keep;
		struct kstat *ks;

		if (*line == '#' || !*line)
			continue;
		if (strncmp(line, "leak ", 5) == 0)
			keep = 0;
		else if (strncmp(line, "keep ", 5) == 0)
			keep = 1;
		else {
			TU_FAIL("corpus %s: bad item line \"%s\"", name, line);
			continue;
		}
		kind = line + 5;
		text = strchr(kind, ' ');
		if (!text || !text[1]) {
			TU_FAIL("corpus %s: bad item line \"%s\"", name, line);
			continue;
		}
		*text++ = '\0';
		/* the planted item is really in the input */
		if (!strstr(in, text)) {
			TU_FAIL("corpus %s: \"%s\" is not in the input", name,
				text);
			continue;
		}
		ks = kstat_for(kind, keep, evasive);
		ks->n++;
		rv_n[keep] += review;
		/* capped, a planted item is no more likely to survive */
		if (!keep) {
			size_t cap;

			for (cap = 256; cap <= 4096; cap *= 4) {
				char *small = telespool__clean_error(
				    in, len, cap, 0, &olen);

				ASSERT_TRUE(small && olen <= cap &&
					    tc_valid_utf8(small, olen));
				if (small && strstr(small, text) &&
				    strstr(out[0], text) == NULL)
					TU_FAIL("corpus %s: cap %zu leaks "
						"\"%s\"",
						name, cap, text);
				free(small);
			}
		}
		for (mode = 0; mode < 2; mode++) {
			int found = strstr(out[mode], text) != NULL;

			if (keep && mode == 1 &&
			    (strcmp(kind, "code") == 0 ||
			     strcmp(kind, "status") == 0 ||
			     strcmp(kind, "message") == 0)) {
				if (mode == 1 && ks->n == 1)
					ks->miss[1] = -1; /* not counted */
				rv_nostrict += review;
				continue;
			}
			if (found != keep) {
				ks->miss[mode]++;
				rv_miss[keep][mode] += review;
				fprintf(stderr,
					"corpus %s (%s): %s %s \"%s\"\n", name,
					mode ? "strict" : "default", kind,
					keep ? "lost" : "leaked", text);
			}
		}
	}
	free(out[0]);
	free(out[1]);
	free(items);
	free(in);
}

static void test_errors_corpus(const char *dir)
{
	DIR *d = opendir(dir);
	struct dirent *de;
	char name[256];
	int files = 0, k, ev, mode;
	int sum_n[2][2] = {{0, 0}, {0, 0}}, sum_miss[2][2][2];

	memset(sum_miss, 0, sizeof sum_miss);
	if (!d) {
		TU_FAIL("cannot open corpus directory %s", dir);
		return;
	}
	while ((de = readdir(d)) != NULL) {
		size_t nl = strlen(de->d_name);

		if (nl < 5 || nl >= sizeof name ||
		    strcmp(de->d_name + nl - 4, ".txt") != 0)
			continue;
		memcpy(name, de->d_name, nl - 4);
		name[nl - 4] = '\0';
		errors_file(dir, name, &files);
	}
	closedir(d);
	printf("error corpus: %d tracebacks\n", files);
	printf("  %-8s %-14s %5s %9s %9s\n", "", "kind", "items", "default",
	       "strict");
	for (ev = 0; ev < 2; ev++)
		for (k = 0; k < nkstats; k++) {
			struct kstat *ks = &kstats[k];

			if (ks->evasive != ev)
				continue;
			printf("  %-8s %-14s %5d %4d %-4s %4d %-4s\n",
			       ks->keep ? "kept"
			       : ev     ? "evasive"
					: "planted",
			       ks->kind, ks->n, ks->n - ks->miss[0],
			       ks->keep ? "kept" : "gone",
			       ks->miss[1] < 0 ? 0 : ks->n - ks->miss[1],
			       ks->miss[1] < 0 ? "n/a"
			       : ks->keep      ? "kept"
					       : "gone");
			for (mode = 0; mode < 2; mode++) {
				if (ks->keep && ks->miss[1] < 0 && mode == 1)
					continue;
				sum_miss[ks->keep][ev][mode] +=
				    ks->miss[mode] < 0 ? 0 : ks->miss[mode];
			}
			sum_n[ks->keep][ev] += ks->n;
		}
	{
		int kn0 = 0, kn1 = 0;

		for (k = 0; k < nkstats; k++)
			if (kstats[k].keep) {
				kn0 += kstats[k].n;
				kn1 += kstats[k].miss[1] < 0 ? 0 : kstats[k].n;
			}
		printf(
		    "error corpus summary: real tracebacks leaked %d/%d "
		    "default, %d/%d strict; evasive leaked %d/%d (%.1f%%) "
		    "default, %d/%d (%.1f%%) strict; debug items kept "
		    "%d/%d (%.1f%%) default, %d/%d (%.1f%%) strict\n",
		    sum_miss[0][0][0], sum_n[0][0], sum_miss[0][0][1],
		    sum_n[0][0], sum_miss[0][1][0], sum_n[0][1],
		    sum_n[0][1] ? 100.0 * sum_miss[0][1][0] / sum_n[0][1] : 0,
		    sum_miss[0][1][1], sum_n[0][1],
		    sum_n[0][1] ? 100.0 * sum_miss[0][1][1] / sum_n[0][1] : 0,
		    kn0 - sum_miss[1][0][0] - sum_miss[1][1][0], kn0,
		    kn0 ? 100.0 *
			      (kn0 - sum_miss[1][0][0] - sum_miss[1][1][0]) /
			      kn0
			: 0,
		    kn1 - sum_miss[1][0][1] - sum_miss[1][1][1], kn1,
		    kn1 ? 100.0 *
			      (kn1 - sum_miss[1][0][1] - sum_miss[1][1][1]) /
			      kn1
			: 0);
		printf("error corpus, the %d review_* tracebacks alone: "
		       "leaked %d/%d default, %d/%d strict; debug items kept "
		       "%d/%d default, %d/%d strict\n",
		       rv_files, rv_miss[0][0], rv_n[0], rv_miss[0][1], rv_n[0],
		       rv_n[1] - rv_miss[1][0], rv_n[1],
		       rv_n[1] - rv_nostrict - rv_miss[1][1],
		       rv_n[1] - rv_nostrict);
		/* the targets */
		ASSERT_EQ(sum_miss[0][0][0], 0);
		ASSERT_EQ(sum_miss[0][0][1], 0);
		ASSERT_TRUE(sum_miss[0][1][0] * 100 <= sum_n[0][1] * 5);
		ASSERT_TRUE(sum_miss[0][1][1] * 100 <= sum_n[0][1] * 2);
		ASSERT_TRUE((sum_miss[1][0][0] + sum_miss[1][1][0]) * 100 <=
			    kn0 * 3);
		ASSERT_TRUE((sum_miss[1][0][1] + sum_miss[1][1][1]) * 100 <=
			    kn1 * 3);
		ASSERT_TRUE(files >= 30);
		ASSERT_TRUE(sum_n[0][0] >= 90 && sum_n[0][1] >= 30);
	}
}

/* ---- allocation failures ------------------------------------------------ */

#ifdef TEST_REDACT_OOM
static void test_oom(void)
{
	static const char tb[] =
	    "Traceback (most recent call last):\n"
	    "  File \"/home/alice/x.py\", line 1, in f\n"
	    "ValueError: sk-proj-Ab3dEf6hIj9kLm2nOp5qRs8tUv1wXy4z";
	long k;
	char *o, *big = repeat("x = 10.0.0.1\n", 400);

	for (k = 0; k < 40; k++) {
		oom_countdown = k;
		o = telespool__clean_text(tb, strlen(tb), 100, 1, NULL);
		free(o);
		oom_countdown = k;
		o = telespool__clean_text(big, strlen(big), 100, 0, NULL);
		free(o);
		oom_countdown = k;
		o = telespool__clean_name(big, 300, 100);
		free(o);
		oom_countdown = k;
		o = telespool__clean_error(tb, strlen(tb), 100, 0, NULL);
		free(o);
		oom_countdown = k;
		o = telespool__clean_error(big, strlen(big), 100, 0, NULL);
		free(o);
		oom_countdown = k;
		o = telespool__clean_name("alice@example.com", 17, 100);
		free(o);
	}
	oom_countdown = -1;
	/* and a failure is NULL, not a half result */
	oom_countdown = 0;
	ASSERT_TRUE(telespool__clean_text(tb, strlen(tb), 100, 0, NULL) ==
		    NULL);
	oom_countdown = 0;
	ASSERT_TRUE(telespool__clean_name("x", 1, 10) == NULL);
	oom_countdown = 0;
	ASSERT_TRUE(telespool__clean_error(tb, strlen(tb), 100, 0, NULL) ==
		    NULL);
	oom_countdown = -1;
	free(big);
}
#endif

#ifndef TEST_CORPUS_DIR
#define TEST_CORPUS_DIR "tests/corpus"
#endif

static void t_corpus(void)
{
	char *sample = NULL;
	size_t sample_len = 0;

	test_corpus(TEST_CORPUS_DIR "/tracebacks", &sample, &sample_len);
	free(sample);
}

static void t_errors_corpus(void)
{
	test_errors_corpus(TEST_CORPUS_DIR "/errors");
}

/* Skipped with TEST_REDACT_QUICK set. */
static void t_adversarial(void)
{
	if (!getenv("TEST_REDACT_QUICK"))
		test_adversarial();
}

/* The throughput table of the README (on the corpus's first traceback);
 * skipped with TEST_REDACT_QUICK set. */
static void t_speed(void)
{
	char *sample = NULL;
	size_t sample_len = 0;

	if (getenv("TEST_REDACT_QUICK"))
		return;
	test_corpus(TEST_CORPUS_DIR "/tracebacks", &sample, &sample_len);
	if (sample)
		report_speed(sample, sample_len);
	free(sample);
}

static const struct tu_test tests[] = {
    {"credentials", test_credentials},
    {"identities", test_identities},
    {"survival", test_survival},
    {"strict", test_strict},
    {"guard", test_guard},
    {"cleaning", test_cleaning},
    {"display", test_display},
    {"truncation", test_truncation},
    {"corpus", t_corpus},
    {"errors_corpus", t_errors_corpus},
    {"property", test_property},
#ifdef TEST_REDACT_OOM
    {"oom", test_oom},
#endif
    {"adversarial", t_adversarial},
    {"speed", t_speed},
};

int main(int argc, char **argv)
{
	return tu_main(tests, sizeof(tests) / sizeof(tests[0]), argc, argv,
		       NULL);
}
