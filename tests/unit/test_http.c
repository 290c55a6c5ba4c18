/*
 * Unit tests of the HTTP server, in process on 127.0.0.1 with a port the
 * kernel picks: listen parsing, the zero-trust rules, credentials refused,
 * the feed with resume and filters, malformed and oversized requests from
 * a bounded loopback client, and a TLS handshake (server and client
 * certificates of a CA made with openssl for the test).
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <arpa/inet.h>
#include <errno.h>
#include <netinet/in.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/time.h>
#include <unistd.h>
#include <cmocka.h>

#include <json-c/json.h>

#include "feed.h"
#include "http.h"
#include "metrics.h"
#include "policy.h"

static char tmpdir[64];
static char token_path[128];

static int group_setup(void **state)
{
	FILE *file;

	(void)state;
	strcpy(tmpdir, "/tmp/pgvigil-http-XXXXXX");
	assert_non_null(mkdtemp(tmpdir));
	snprintf(token_path, sizeof(token_path), "%s/token", tmpdir);
	file = fopen(token_path, "w");
	fputs("s3cret-token\n", file);
	fclose(file);
	chmod(token_path, 0600);
	metrics_init();
	return 0;
}

static int group_teardown(void **state)
{
	char cmd[128];

	(void)state;
	snprintf(cmd, sizeof(cmd), "rm -rf '%s'", tmpdir);
	return system(cmd);
}

/* Send 'request' as is; the response, NUL-terminated, malloc'd */
static char *exchange(uint16_t port, const char *request, size_t len)
{
	struct sockaddr_in addr = { .sin_family = AF_INET };
	struct timeval timeout = { .tv_sec = 5 };
	size_t cap = 65536, got = 0;
	char *response = calloc(1, cap + 1);
	ssize_t n;
	int fd;

	addr.sin_port = htons(port);
	addr.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
	fd = socket(AF_INET, SOCK_STREAM, 0);
	assert_true(fd >= 0);
	setsockopt(fd, SOL_SOCKET, SO_RCVTIMEO, &timeout, sizeof(timeout));
	assert_int_equal(connect(fd, (void *)&addr, sizeof(addr)), 0);
	/* a server that refuses early may reset before all is written */
	n = send(fd, request, len, MSG_NOSIGNAL);
	(void)n;
	shutdown(fd, SHUT_WR);
	while (got < cap && (n = read(fd, response + got, cap - got)) > 0)
		got += n;
	close(fd);
	return response;
}

static int status_of(const char *response)
{
	int status = 0;

	sscanf(response, "HTTP/1.%*d %d", &status);
	return status;
}

static int get(uint16_t port, const char *path, const char *header,
	       char **body)
{
	char request[512], *response;
	int status;

	snprintf(request, sizeof(request), "GET %s HTTP/1.0\r\n%s%s\r\n",
		 path, header ? header : "", header ? "\r\n" : "");
	response = exchange(port, request, strlen(request));
	status = status_of(response);
	if (body)
		*body = response;
	else
		free(response);
	return status;
}

static bool ready_answer;

static bool ready(void *arg)
{
	(void)arg;
	return ready_answer;
}

static struct http_server *start(struct http_config *config)
{
	struct http_server *server;
	char err[256] = "";
	int ret;

	config->listen = "127.0.0.1:0";
	config->ready = ready;
	ret = http_start(config, &server, err, sizeof(err));
	if (ret)
		fail_msg("http_start: %s", err);
	assert_true(http_port(server) > 0);
	return server;
}

static void http_parse_listen__forms__parsed_or_refused(void **state)
{
	struct sockaddr_storage addr;
	socklen_t len;

	(void)state;
	assert_int_equal(http_parse_listen("127.0.0.1:9187", &addr, &len), 0);
	assert_true(http_is_loopback((void *)&addr));
	assert_int_equal(http_parse_listen("[::1]:80", &addr, &len), 0);
	assert_true(http_is_loopback((void *)&addr));
	assert_int_equal(http_parse_listen("10.1.2.3:80", &addr, &len), 0);
	assert_false(http_is_loopback((void *)&addr));
	assert_int_equal(http_parse_listen("0.0.0.0:80", &addr, &len), 0);
	assert_false(http_is_loopback((void *)&addr));
	assert_int_equal(http_parse_listen("localhost", &addr, &len), -EINVAL);
	assert_int_equal(http_parse_listen(":9187", &addr, &len), 0);
	assert_true(http_is_loopback((void *)&addr));
	assert_int_equal(http_parse_listen("9187", &addr, &len), 0);
	assert_int_equal(http_parse_listen(":", &addr, &len), -EINVAL);
	assert_int_equal(http_parse_listen("1.2.3.4:99999", &addr, &len),
			 -EINVAL);
	assert_int_equal(http_parse_listen("1.2.3.4:", &addr, &len), -EINVAL);
}

static void http_auth_check__tokens__constant_time_compare(void **state)
{
	struct policy_http policy = { .token_file = token_path };
	struct http_auth auth;
	char err[256];

	(void)state;
	assert_int_equal(http_auth_load(&policy, &auth, err, sizeof(err)), 0);
	assert_true(auth.required);
	assert_int_equal(http_auth_check(&auth, NULL, false), -ENOENT);
	assert_int_equal(http_auth_check(&auth, "Basic eDp5", false), -ENOENT);
	assert_int_equal(http_auth_check(&auth, "Bearer s3cret-tokeN", false),
			 -EACCES);
	assert_int_equal(http_auth_check(&auth, "Bearer s3cret", false),
			 -EACCES);
	assert_int_equal(http_auth_check(&auth, "Bearer ", false), -EACCES);
	assert_int_equal(http_auth_check(&auth, "Bearer s3cret-token", false),
			 0);
	/* no client CA: a certificate alone does not authenticate */
	assert_int_equal(http_auth_check(&auth, NULL, true), -ENOENT);
}

static void http_auth_load__token_readable_by_others__refused(void **state)
{
	struct policy_http policy = { .token_file = token_path };
	struct http_auth auth;
	char err[256];

	(void)state;
	chmod(token_path, 0644);
	assert_int_equal(http_auth_load(&policy, &auth, err, sizeof(err)),
			 -EPERM);
	chmod(token_path, 0600);
}

static void http_start__exposed_without_tls__refused(void **state)
{
	struct policy_http policy = { .token_file = token_path };
	struct http_config config = { .listen = "0.0.0.0:0",
				      .policy = &policy };
	struct http_server *server;
	char err[256];

	(void)state;
	assert_int_equal(http_start(&config, &server, err, sizeof(err)),
			 -EPERM);
	assert_non_null(strstr(err, "tls_cert"));
}

static void http_requests__credentials__missing_and_wrong_refused(void **state)
{
	struct policy_http policy = { .token_file = token_path };
	struct http_config config = { .policy = &policy };
	struct http_server *server = start(&config);
	uint16_t port = http_port(server);
	char *body;

	(void)state;
	ready_answer = true;
	assert_int_equal(get(port, "/metrics", NULL, NULL), 401);
	assert_int_equal(get(port, "/feed", NULL, NULL), 401);
	assert_int_equal(get(port, "/healthz",
			     "Authorization: Bearer nope", NULL), 403);
	assert_int_equal(get(port, "/metrics",
			     "Authorization: Bearer s3cret-token", &body), 200);
	assert_non_null(strstr(body, "pgvigil_build_info{version="));
	assert_non_null(strstr(body, "text/plain; version=0.0.4"));
	free(body);
	assert_int_equal(get(port, "/readyz",
			     "Authorization: Bearer s3cret-token", NULL), 200);
	ready_answer = false;
	assert_int_equal(get(port, "/readyz",
			     "Authorization: Bearer s3cret-token", NULL), 503);
	http_stop(server);

	policy.metrics_open = true;
	server = start(&config);
	port = http_port(server);
	assert_int_equal(get(port, "/metrics", NULL, NULL), 200);
	assert_int_equal(get(port, "/healthz", NULL, NULL), 401);
	http_stop(server);
}

static void emit(struct feed *feed, const char *invariant, const char *user)
{
	struct json_object *record = json_object_new_object();
	struct json_object *session = json_object_new_object();

	json_object_object_add(record, "invariant",
			       json_object_new_string(invariant));
	json_object_object_add(record, "relation",
			       json_object_new_string("public.accounts"));
	json_object_object_add(session, "user", json_object_new_string(user));
	json_object_object_add(record, "session", session);
	assert_true(feed_emit(feed, record) > 0);
	json_object_put(record);
}

static int count_lines(const char *text, const char *needle)
{
	int n = 0;

	while ((text = strstr(text, needle))) {
		n++;
		text++;
	}
	return n;
}

static void http_feed__since_and_filters__replayed_once(void **state)
{
	struct http_config config = { 0 };
	struct http_server *server;
	struct feed *feed;
	char err[256], *body;
	uint16_t port;
	int i;

	(void)state;
	assert_int_equal(feed_open(NULL, FEED_SYNC_NEVER, false, &feed, err,
				   sizeof(err)), 0);
	for (i = 0; i < 6; i++)
		emit(feed, i % 2 ? "monetary" : "event_immutability",
		     i < 3 ? "alice" : "bob");
	config.feed = feed;
	server = start(&config);
	port = http_port(server);
	assert_int_equal(get(port, "/feed?format=jsonl&follow=0&since=2",
			     NULL, &body), 200);
	assert_int_equal(count_lines(body, "{\"id\":"), 4);
	assert_non_null(strstr(body, "{\"id\":3,"));
	assert_null(strstr(body, "{\"id\":2,"));
	assert_non_null(strstr(body, "Pgvigil-Cursor: 2"));
	free(body);
	assert_int_equal(get(port, "/feed?follow=0&since=0&invariant=monetary"
			     "&user=bob", NULL, &body), 200);
	assert_int_equal(count_lines(body, "\nid: "), 2);
	assert_non_null(strstr(body, "id: 4\nevent: violation\ndata: {"));
	assert_non_null(strstr(body, "id: 6\n"));
	free(body);
	assert_int_equal(get(port, "/feed?follow=0", "Last-Event-ID: 5",
			     &body), 200);
	assert_int_equal(count_lines(body, "\nid: "), 1);
	free(body);
	assert_int_equal(get(port, "/feed?since=x", NULL, NULL), 400);
	http_stop(server);
	feed_close(feed);
}

/* The server must answer /healthz after each abuse */
static void http_requests__malformed_and_oversized__survived(void **state)
{
	static const char *const bad[] = {
		"\r\n\r\n",
		"GARBAGE\r\n\r\n",
		"GET\r\n\r\n",
		"GET /healthz HTTP/9.9\r\n\r\n",
		"GET /healthz HTTP/1.1\r\nHost: x\r\nContent-Length: -5\r\n\r\n",
		"POST /feed HTTP/1.1\r\nHost: x\r\nContent-Length: 5\r\n\r\nhello",
		"GET /healthz HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked"
		"\r\n\r\nzz\r\n",
		"GET /%00%ff/../../etc/passwd HTTP/1.0\r\n\r\n",
		"\x16\x03\x01\x02\x00\x01\x00\x01\xfc\x03\x03",
	};
	struct http_config config = { 0 };
	struct http_server *server = start(&config);
	uint16_t port = http_port(server);
	size_t big = 256 * 1024, i;
	char *request, *response;

	(void)state;
	for (i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
		free(exchange(port, bad[i], strlen(bad[i])));
		assert_int_equal(get(port, "/healthz", NULL, NULL), 200);
	}
	request = malloc(big);
	memset(request, 'a', big);
	memcpy(request, "GET /", 5);
	response = exchange(port, request, big);
	assert_true(status_of(response) == 414 || status_of(response) == 431 ||
		    status_of(response) == 0);
	free(response);
	memcpy(request, "GET / HTTP/1.0\r\nX: ", 19);
	memcpy(request + big - 4, "\r\n\r\n", 4);
	free(exchange(port, request, big));
	free(request);
	assert_int_equal(get(port, "/nowhere", NULL, NULL), 404);
	assert_int_equal(get(port, "/healthz", NULL, NULL), 200);
	http_stop(server);
}

static int sh(const char *fmt, ...)
{
	char cmd[2048];
	va_list args;

	va_start(args, fmt);
	vsnprintf(cmd, sizeof(cmd), fmt, args);
	va_end(args);
	return system(cmd);
}

/* A CA, a server certificate for 127.0.0.1 and a client certificate */
static void make_test_ca(void)
{
	assert_int_equal(sh("cd '%s' && "
		"openssl req -x509 -newkey ec -pkeyopt ec_paramgen_curve:P-256 "
		"-nodes -keyout ca.key -out ca.crt -days 1 -subj /CN=test-ca "
		">/dev/null 2>&1 && "
		"openssl req -newkey ec -pkeyopt ec_paramgen_curve:P-256 -nodes "
		"-keyout server.key -out server.csr -subj /CN=127.0.0.1 "
		">/dev/null 2>&1 && "
		"printf 'subjectAltName=IP:127.0.0.1\\n' > san.ext && "
		"openssl x509 -req -in server.csr -CA ca.crt -CAkey ca.key "
		"-CAcreateserial -out server.crt -days 1 -extfile san.ext "
		">/dev/null 2>&1 && "
		"openssl req -newkey ec -pkeyopt ec_paramgen_curve:P-256 -nodes "
		"-keyout client.key -out client.csr -subj /CN=client "
		">/dev/null 2>&1 && "
		"openssl x509 -req -in client.csr -CA ca.crt -CAkey ca.key "
		"-CAcreateserial -out client.crt -days 1 >/dev/null 2>&1 && "
		"openssl req -x509 -newkey ec -pkeyopt ec_paramgen_curve:P-256 "
		"-nodes -keyout rogue.key -out rogue.crt -days 1 -subj /CN=rogue "
		">/dev/null 2>&1", tmpdir), 0);
}

static int curl_status(uint16_t port, const char *extra)
{
	char cmd[1024], out[16] = "";
	FILE *pipe;

	snprintf(cmd, sizeof(cmd), "cd '%s' && curl -s -o /dev/null -m 5 "
		 "-w '%%{http_code}' --cacert ca.crt %s "
		 "https://127.0.0.1:%u/healthz", tmpdir, extra, port);
	pipe = popen(cmd, "r");
	if (!fgets(out, sizeof(out), pipe))
		out[0] = 0;
	pclose(pipe);
	return atoi(out);
}

static void http_tls__client_certificates__only_the_ca_s_accepted(void **state)
{
	char cert[128], key[128], ca[128];
	struct policy_http policy = { .tls_cert = cert, .tls_key = key,
				      .tls_client_ca = ca };
	struct http_config config = { .policy = &policy };
	struct http_server *server;
	struct feed *feed;
	uint16_t port;

	(void)state;
	assert_int_equal(feed_open(NULL, FEED_SYNC_NEVER, false, &feed, cert,
				   sizeof(cert)), 0);
	emit(feed, "monetary", "alice");
	emit(feed, "monetary", "bob");
	config.feed = feed;
	make_test_ca();
	snprintf(cert, sizeof(cert), "%s/server.crt", tmpdir);
	snprintf(key, sizeof(key), "%s/server.key", tmpdir);
	snprintf(ca, sizeof(ca), "%s/ca.crt", tmpdir);
	server = start(&config);
	port = http_port(server);
	assert_int_equal(curl_status(port, "--cert client.crt --key client.key"),
			 200);
	assert_int_equal(curl_status(port, ""), 401);
	assert_int_equal(curl_status(port, "--cert rogue.crt --key rogue.key"),
			 401);
	/* plain HTTP to a TLS port gets no answer */
	assert_int_equal(get(port, "/healthz", NULL, NULL), 0);
	/* pgvigil's own client: replay over mTLS, refused without a cert */
	assert_int_equal(sh("cd '%s' && " PGV_SOURCE_DIR "/pgvigil feed --url "
			    "https://127.0.0.1:%u --since 0 --cacert ca.crt "
			    "--cert client.crt --key client.key > out 2>/dev/null"
			    " && test $(grep -c '^{\"id\":' out) = 2",
			    tmpdir, port), 0);
	assert_int_not_equal(sh("cd '%s' && " PGV_SOURCE_DIR "/pgvigil feed "
				"--url https://127.0.0.1:%u --since 0 --cacert "
				"ca.crt >/dev/null 2>&1", tmpdir, port), 0);
	http_stop(server);
	feed_close(feed);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(http_parse_listen__forms__parsed_or_refused),
		cmocka_unit_test(http_auth_check__tokens__constant_time_compare),
		cmocka_unit_test(http_auth_load__token_readable_by_others__refused),
		cmocka_unit_test(http_start__exposed_without_tls__refused),
		cmocka_unit_test(http_requests__credentials__missing_and_wrong_refused),
		cmocka_unit_test(http_feed__since_and_filters__replayed_once),
		cmocka_unit_test(http_requests__malformed_and_oversized__survived),
		cmocka_unit_test(http_tls__client_certificates__only_the_ca_s_accepted),
	};

	return cmocka_run_group_tests(tests, group_setup, group_teardown);
}
