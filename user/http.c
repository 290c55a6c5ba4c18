/*
 * The HTTP server. See http.h for the trust rules, the threads and the
 * shutdown order. libmicrohttpd does TLS with GnuTLS, so the client
 * certificate is checked through the GnuTLS session it exposes; the token
 * comparison uses OpenSSL's constant-time CRYPTO_memcmp.
 */
#include <arpa/inet.h>
#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#include <gnutls/gnutls.h>
#include <json-c/json.h>
#include <microhttpd.h>
#include <openssl/crypto.h>
#include <openssl/sha.h>

#include "feed.h"
#include "http.h"
#include "log.h"
#include "metrics.h"
#include "policy.h"

#if MHD_VERSION < 0x00097002
typedef int MHD_Result;
#else
typedef enum MHD_Result MHD_Result;
#endif

/* a stream waits on the feed this long before it checks for shutdown */
#define HTTP_POLL_MS 1000

struct http_server {
	struct MHD_Daemon *daemon;
	const struct http_config *config;
	struct http_auth auth;
	char *tls_cert;
	char *tls_key;
	char *tls_client_ca;
	volatile bool stopping;
	uint16_t port;
};

struct feed_filter {
	char *invariant;
	char *relation;		/* glob */
	char *user;
};

struct feed_stream {
	struct http_server *server;
	struct feed_reader *reader;
	struct feed_filter filter;
	bool sse;
	bool follow;
	int64_t until;		/* without follow: the last id to send */
	int64_t last_id;	/* the last id read, sent or filtered out */
	char *pending;
	size_t pending_len;
	size_t pending_pos;
	struct timespec last_write;
};

int http_parse_listen(const char *text, struct sockaddr_storage *addr,
		      socklen_t *len)
{
	struct sockaddr_in6 *v6 = (struct sockaddr_in6 *)addr;
	struct sockaddr_in *v4 = (struct sockaddr_in *)addr;
	char host[64], *end;
	const char *colon;
	unsigned long port;
	size_t host_len;

	colon = strrchr(text, ':');
	/* "PORT" or ":PORT" alone: loopback */
	if (!colon || colon == text) {
		snprintf(host, sizeof(host), "127.0.0.1:%s",
			 colon ? colon + 1 : text);
		if (!strcmp(host + 10, "") || strchr(host + 10, ':'))
			return -EINVAL;
		return http_parse_listen(host, addr, len);
	}
	port = strtoul(colon + 1, &end, 10);
	if (!colon[1] || *end || port > 65535)
		return -EINVAL;
	host_len = colon - text;
	if (text[0] == '[' && colon[-1] == ']') {
		text++;
		host_len -= 2;
	}
	if (host_len >= sizeof(host))
		return -EINVAL;
	memcpy(host, text, host_len);
	host[host_len] = 0;
	memset(addr, 0, sizeof(*addr));
	if (inet_pton(AF_INET, host, &v4->sin_addr) == 1) {
		v4->sin_family = AF_INET;
		v4->sin_port = htons(port);
		*len = sizeof(*v4);
		return 0;
	}
	if (inet_pton(AF_INET6, host, &v6->sin6_addr) == 1) {
		v6->sin6_family = AF_INET6;
		v6->sin6_port = htons(port);
		*len = sizeof(*v6);
		return 0;
	}
	return -EINVAL;
}

bool http_is_loopback(const struct sockaddr *addr)
{
	const struct sockaddr_in6 *v6 = (const void *)addr;
	const struct sockaddr_in *v4 = (const void *)addr;
	const uint8_t *b = v6->sin6_addr.s6_addr;

	if (addr->sa_family == AF_INET)
		return (ntohl(v4->sin_addr.s_addr) >> 24) == 127;
	if (addr->sa_family != AF_INET6)
		return false;
	if (IN6_IS_ADDR_LOOPBACK(&v6->sin6_addr))
		return true;
	return IN6_IS_ADDR_V4MAPPED(&v6->sin6_addr) && b[12] == 127;
}

static int read_token(const char *path, unsigned char digest[32], char *err,
		      size_t err_len)
{
	char token[1024];
	struct stat st;
	size_t n;
	FILE *file;

	file = fopen(path, "re");
	if (!file) {
		snprintf(err, err_len, "cannot open token file '%s': %s",
			 path, strerror(errno));
		return -errno;
	}
	if (fstat(fileno(file), &st) || (st.st_mode & 077)) {
		fclose(file);
		snprintf(err, err_len, "token file '%s' must not be readable "
			 "by group or others", path);
		return -EPERM;
	}
	n = fgets(token, sizeof(token), file) ? strcspn(token, "\r\n") : 0;
	fclose(file);
	if (!n) {
		snprintf(err, err_len, "token file '%s' is empty", path);
		return -EINVAL;
	}
	SHA256((unsigned char *)token, n, digest);
	OPENSSL_cleanse(token, sizeof(token));
	return 0;
}

int http_auth_load(const struct policy_http *policy, struct http_auth *auth,
		   char *err, size_t err_len)
{
	int ret;

	memset(auth, 0, sizeof(*auth));
	if (!policy)
		return 0;
	auth->metrics_open = policy->metrics_open;
	auth->mtls = policy->tls_client_ca != NULL;
	if (policy->token_file) {
		ret = read_token(policy->token_file, auth->token_digest, err,
				 err_len);
		if (ret)
			return ret;
		auth->token = true;
	}
	auth->required = auth->token || auth->mtls;
	return 0;
}

int http_auth_check(const struct http_auth *auth, const char *authorization,
		    bool cert_verified)
{
	unsigned char digest[32];
	const char *token;

	if (!auth->required || (auth->mtls && cert_verified))
		return 0;
	if (!authorization || !auth->token)
		return -ENOENT;
	if (strncasecmp(authorization, "Bearer ", 7))
		return -ENOENT;
	token = authorization + 7;
	while (*token == ' ')
		token++;
	SHA256((const unsigned char *)token, strlen(token), digest);
	if (CRYPTO_memcmp(digest, auth->token_digest, sizeof(digest)))
		return -EACCES;
	return 0;
}

/* GnuTLS verified the peer's certificate chain against the client CA */
static bool client_cert_verified(struct MHD_Connection *connection)
{
	const union MHD_ConnectionInfo *info;
	unsigned int status = 0;
	gnutls_session_t session;

	info = MHD_get_connection_info(connection,
				       MHD_CONNECTION_INFO_GNUTLS_SESSION);
	if (!info || !info->tls_session)
		return false;
	session = (gnutls_session_t)info->tls_session;
	if (gnutls_certificate_type_get(session) != GNUTLS_CRT_X509)
		return false;
	if (!gnutls_certificate_get_peers(session, &(unsigned int){ 0 }))
		return false;
	if (gnutls_certificate_verify_peers2(session, &status) < 0)
		return false;
	return status == 0;
}

static MHD_Result reply(struct MHD_Connection *connection, const char *path,
			unsigned int code, const char *type, const char *body)
{
	struct MHD_Response *response;
	char code_text[8];
	MHD_Result ret;

	response = MHD_create_response_from_buffer(strlen(body), (void *)body,
						   MHD_RESPMEM_MUST_COPY);
	if (!response)
		return MHD_NO;
	MHD_add_response_header(response, "Content-Type", type);
	MHD_add_response_header(response, "Cache-Control", "no-store");
	if (code == MHD_HTTP_UNAUTHORIZED)
		MHD_add_response_header(response, "WWW-Authenticate",
					"Bearer realm=\"pgvigil\"");
	ret = MHD_queue_response(connection, code, response);
	MHD_destroy_response(response);
	snprintf(code_text, sizeof(code_text), "%u", code);
	metrics_inc(METRIC_HTTP_REQUESTS, path, code_text);
	return ret;
}

static MHD_Result serve_metrics(struct http_server *server,
				struct MHD_Connection *connection)
{
	struct MHD_Response *response;
	struct feed *feed = server->config->feed;
	MHD_Result ret;
	size_t len;
	char *text;

	/* totals kept by the feed are mirrored at scrape time */
	if (feed) {
		metrics_set(METRIC_JOURNAL_BYTES, feed_journal_bytes(feed));
		metrics_set(METRIC_JOURNAL_ROTATIONS, feed_rotations(feed));
		metrics_set(METRIC_FEED_RECORDS, feed_count(feed));
	}
	metrics_inc(METRIC_HTTP_REQUESTS, "/metrics", "200");
	if (metrics_render(&text, &len))
		return reply(connection, "/metrics", 500, "text/plain",
			     "out of memory\n");
	response = MHD_create_response_from_buffer(len, text,
						   MHD_RESPMEM_MUST_FREE);
	if (!response) {
		free(text);
		return MHD_NO;
	}
	MHD_add_response_header(response, "Content-Type",
				"text/plain; version=0.0.4; charset=utf-8");
	ret = MHD_queue_response(connection, MHD_HTTP_OK, response);
	MHD_destroy_response(response);
	return ret;
}

static bool filter_matches(const struct feed_filter *filter, const char *line)
{
	struct json_object *record, *field, *session;
	bool match = true;

	if (!filter->invariant && !filter->relation && !filter->user)
		return true;
	record = json_tokener_parse(line);
	if (!record)
		return false;
	if (filter->invariant)
		match = json_object_object_get_ex(record, "invariant", &field) &&
			!strcmp(json_object_get_string(field),
				filter->invariant);
	if (match && filter->relation)
		match = json_object_object_get_ex(record, "relation", &field) &&
			policy_glob(filter->relation,
				    json_object_get_string(field));
	if (match && filter->user)
		match = json_object_object_get_ex(record, "session", &session) &&
			json_object_object_get_ex(session, "user", &field) &&
			!strcmp(json_object_get_string(field), filter->user);
	json_object_put(record);
	return match;
}

/* Frame one record: SSE event, or the JSON line as it is */
static int stream_frame(struct feed_stream *stream, int64_t id, char *line,
			size_t len)
{
	char *framed;
	int n;

	if (!stream->sse) {
		stream->pending = line;
		stream->pending_len = len;
		return 0;
	}
	line[len - 1] = 0;
	n = asprintf(&framed, "id: %lld\nevent: violation\ndata: %s\n\n",
		     (long long)id, line);
	free(line);
	if (n < 0)
		return -ENOMEM;
	stream->pending = framed;
	stream->pending_len = n;
	return 0;
}

static long elapsed_ms(const struct timespec *since)
{
	struct timespec now;

	clock_gettime(CLOCK_MONOTONIC, &now);
	return (now.tv_sec - since->tv_sec) * 1000 +
	       (now.tv_nsec - since->tv_nsec) / 1000000;
}

/*
 * Fill stream->pending with the next thing to send: a matching record, or
 * a keepalive when the stream has been quiet. Blocks up to a second at a
 * time. Returns 0, or -ESHUTDOWN / -ENODATA (stream done) / -errno.
 */
static int stream_next(struct feed_stream *stream)
{
	int keepalive = stream->server->config->keepalive_ms;
	char *line;
	int64_t id;
	size_t len;

	if (keepalive <= 0)
		keepalive = 10000;
	for (;;) {
		if (stream->server->stopping)
			return -ESHUTDOWN;
		if (!stream->follow && stream->last_id >= stream->until)
			return -ENODATA;
		id = feed_reader_next(stream->reader, HTTP_POLL_MS, &line, &len);
		if (id < 0)
			return id;
		if (id > 0) {
			stream->last_id = id;
			if (filter_matches(&stream->filter, line) &&
			    (stream->follow || id <= stream->until))
				return stream_frame(stream, id, line, len);
			free(line);
			continue;
		}
		if (!stream->follow)
			return -ENODATA;
		if (elapsed_ms(&stream->last_write) >= keepalive) {
			stream->pending = strdup(stream->sse ? ": keepalive\n\n"
							     : "\n");
			stream->pending_len = stream->pending ?
				strlen(stream->pending) : 0;
			return stream->pending ? 0 : -ENOMEM;
		}
	}
}

static ssize_t stream_read(void *cls, uint64_t pos, char *buf, size_t max)
{
	struct feed_stream *stream = cls;
	size_t n;

	(void)pos;
	if (!stream->pending && stream_next(stream))
		return MHD_CONTENT_READER_END_OF_STREAM;
	n = stream->pending_len - stream->pending_pos;
	if (n > max)
		n = max;
	memcpy(buf, stream->pending + stream->pending_pos, n);
	stream->pending_pos += n;
	if (stream->pending_pos == stream->pending_len) {
		free(stream->pending);
		stream->pending = NULL;
		stream->pending_pos = 0;
	}
	clock_gettime(CLOCK_MONOTONIC, &stream->last_write);
	return n;
}

static void stream_free(void *cls)
{
	struct feed_stream *stream = cls;

	feed_reader_close(stream->reader);
	free(stream->pending);
	free(stream->filter.invariant);
	free(stream->filter.relation);
	free(stream->filter.user);
	free(stream);
	metrics_add(METRIC_FEED_CLIENTS, -1);
}

static char *query_dup(struct MHD_Connection *connection, const char *key)
{
	const char *value = MHD_lookup_connection_value(
		connection, MHD_GET_ARGUMENT_KIND, key);

	return value && *value ? strdup(value) : NULL;
}

/* ?since=ID wins over Last-Event-ID; both name the last id already seen */
static int stream_cursor(struct MHD_Connection *connection, int64_t *after)
{
	const char *text;
	char *end;

	text = MHD_lookup_connection_value(connection, MHD_GET_ARGUMENT_KIND,
					   "since");
	if (!text)
		text = MHD_lookup_connection_value(connection, MHD_HEADER_KIND,
						   "Last-Event-ID");
	if (!text) {
		*after = -1;
		return 0;
	}
	errno = 0;
	*after = strtoll(text, &end, 10);
	if (errno || !*text || *end || *after < 0)
		return -EINVAL;
	return 0;
}

static bool query_flag(struct MHD_Connection *connection, const char *key,
		       bool fallback)
{
	const char *value = MHD_lookup_connection_value(
		connection, MHD_GET_ARGUMENT_KIND, key);

	if (!value)
		return fallback;
	return strcmp(value, "0") && strcmp(value, "false");
}

static struct feed_stream *stream_new(struct http_server *server,
				      struct MHD_Connection *connection,
				      int64_t after)
{
	struct feed *feed = server->config->feed;
	struct feed_stream *stream = calloc(1, sizeof(*stream));
	const char *format;

	if (!stream)
		return NULL;
	/* without ?since the stream starts with the next record */
	if (after < 0)
		after = feed_next_id(feed) - 1;
	if (feed_reader_open(feed, after, &stream->reader)) {
		free(stream);
		return NULL;
	}
	stream->server = server;
	format = MHD_lookup_connection_value(connection, MHD_GET_ARGUMENT_KIND,
					     "format");
	stream->sse = !format || strcmp(format, "jsonl");
	stream->follow = query_flag(connection, "follow", true);
	stream->until = feed_next_id(feed) - 1;
	stream->last_id = after;
	stream->filter.invariant = query_dup(connection, "invariant");
	stream->filter.relation = query_dup(connection, "relation");
	stream->filter.user = query_dup(connection, "user");
	clock_gettime(CLOCK_MONOTONIC, &stream->last_write);
	return stream;
}

static MHD_Result serve_feed(struct http_server *server,
			     struct MHD_Connection *connection)
{
	struct MHD_Response *response;
	struct feed_stream *stream;
	char cursor[24];
	MHD_Result ret;
	int64_t after;

	if (!server->config->feed)
		return reply(connection, "/feed", 503, "text/plain",
			     "no feed\n");
	if (stream_cursor(connection, &after))
		return reply(connection, "/feed", 400, "text/plain",
			     "since must be a record id\n");
	stream = stream_new(server, connection, after);
	if (!stream)
		return reply(connection, "/feed", 500, "text/plain",
			     "out of memory\n");
	response = MHD_create_response_from_callback(MHD_SIZE_UNKNOWN, 4096,
						     stream_read, stream,
						     stream_free);
	if (!response) {
		feed_reader_close(stream->reader);
		free(stream);
		return MHD_NO;
	}
	metrics_add(METRIC_FEED_CLIENTS, 1);
	snprintf(cursor, sizeof(cursor), "%lld", (long long)stream->last_id);
	MHD_add_response_header(response, HTTP_CURSOR_HEADER, cursor);
	MHD_add_response_header(response, "Content-Type",
				stream->sse ? "text/event-stream"
					    : "application/x-ndjson");
	MHD_add_response_header(response, "Cache-Control", "no-store");
	ret = MHD_queue_response(connection, MHD_HTTP_OK, response);
	MHD_destroy_response(response);
	metrics_inc(METRIC_HTTP_REQUESTS, "/feed", "200");
	return ret;
}

static MHD_Result check_auth(struct http_server *server,
			     struct MHD_Connection *connection,
			     const char *path, bool *allowed)
{
	const char *authorization;
	int ret;

	*allowed = true;
	if (!strcmp(path, "/metrics") && server->auth.metrics_open)
		return MHD_YES;
	authorization = MHD_lookup_connection_value(connection, MHD_HEADER_KIND,
						    "Authorization");
	ret = http_auth_check(&server->auth, authorization,
			      server->auth.mtls &&
			      client_cert_verified(connection));
	if (!ret)
		return MHD_YES;
	*allowed = false;
	metrics_inc(METRIC_HTTP_AUTH_FAILURES,
		    ret == -ENOENT ? "missing" : "wrong");
	if (ret == -ENOENT)
		return reply(connection, path, MHD_HTTP_UNAUTHORIZED,
			     "text/plain", "credentials required\n");
	return reply(connection, path, MHD_HTTP_FORBIDDEN, "text/plain",
		     "wrong credentials\n");
}

/* Only known paths are labelled, so a scanner cannot grow the metrics */
static const char *known_path(const char *url)
{
	static const char *const paths[] = {
		"/metrics", "/healthz", "/readyz", "/feed", NULL,
	};
	int i;

	for (i = 0; paths[i]; i++)
		if (!strcmp(url, paths[i]))
			return paths[i];
	return "other";
}

static MHD_Result dispatch(struct http_server *server,
			   struct MHD_Connection *connection, const char *path)
{
	const struct http_config *config = server->config;
	bool allowed;
	MHD_Result ret;

	ret = check_auth(server, connection, path, &allowed);
	if (!allowed)
		return ret;
	if (!strcmp(path, "/metrics"))
		return serve_metrics(server, connection);
	if (!strcmp(path, "/healthz"))
		return reply(connection, path, 200, "text/plain", "ok\n");
	if (!strcmp(path, "/readyz")) {
		if (!config->ready || config->ready(config->ready_arg))
			return reply(connection, path, 200, "text/plain",
				     "ready\n");
		return reply(connection, path, 503, "text/plain",
			     "not ready\n");
	}
	if (!strcmp(path, "/feed"))
		return serve_feed(server, connection);
	return reply(connection, path, 404, "text/plain", "not found\n");
}

static MHD_Result handle(void *cls, struct MHD_Connection *connection,
			 const char *url, const char *method,
			 const char *version, const char *upload_data,
			 size_t *upload_data_size, void **request_state)
{
	struct http_server *server = cls;
	const char *path = known_path(url);

	(void)version;
	(void)upload_data;
	/* the first call only announces the headers */
	if (!*request_state) {
		*request_state = server;
		return MHD_YES;
	}
	if (*upload_data_size)
		return reply(connection, path, 413, "text/plain",
			     "request bodies are not accepted\n");
	if (strcmp(method, MHD_HTTP_METHOD_GET) &&
	    strcmp(method, MHD_HTTP_METHOD_HEAD))
		return reply(connection, path, 405, "text/plain",
			     "only GET\n");
	return dispatch(server, connection, path);
}

static void mhd_log(void *cls, const char *fmt, va_list args)
{
	char message[512];

	(void)cls;
	vsnprintf(message, sizeof(message), fmt, args);
	log_debug("http: %s", message);
}

static int read_pem(const char *path, char **out, char *err, size_t err_len)
{
	FILE *file = fopen(path, "re");
	size_t len = 0;
	char buf[65536];

	if (!file) {
		snprintf(err, err_len, "cannot open '%s': %s", path,
			 strerror(errno));
		return -errno;
	}
	len = fread(buf, 1, sizeof(buf) - 1, file);
	fclose(file);
	buf[len] = 0;
	*out = strdup(buf);
	OPENSSL_cleanse(buf, sizeof(buf));
	return *out ? 0 : -ENOMEM;
}

/* Decide TLS and auth; an exposed listener without both is refused */
static int server_secure(struct http_server *server, bool loopback, char *err,
			 size_t err_len)
{
	const struct policy_http *policy = server->config->policy;
	int ret;

	ret = http_auth_load(policy, &server->auth, err, err_len);
	if (ret)
		return ret;
	if (!loopback && (!policy || !policy->tls_cert || !policy->tls_key ||
			  !server->auth.required)) {
		snprintf(err, err_len, "a listener off loopback needs "
			 "http.tls_cert, http.tls_key and http.tls_client_ca "
			 "or http.token_file in the policy");
		return -EPERM;
	}
	if (policy && policy->tls_cert && policy->tls_key) {
		ret = read_pem(policy->tls_cert, &server->tls_cert, err,
			       err_len);
		if (!ret)
			ret = read_pem(policy->tls_key, &server->tls_key, err,
				       err_len);
		if (ret)
			return ret;
	}
	if (policy && policy->tls_client_ca)
		return read_pem(policy->tls_client_ca, &server->tls_client_ca,
				err, err_len);
	return 0;
}

static void server_free(struct http_server *server)
{
	if (server->tls_key)
		OPENSSL_cleanse(server->tls_key, strlen(server->tls_key));
	free(server->tls_cert);
	free(server->tls_key);
	free(server->tls_client_ca);
	free(server);
}

static struct MHD_Daemon *server_daemon(struct http_server *server,
					const struct sockaddr *addr)
{
	unsigned int flags = MHD_USE_INTERNAL_POLLING_THREAD |
			     MHD_USE_THREAD_PER_CONNECTION | MHD_USE_ERROR_LOG;
	const char *none = NULL;

	if (addr->sa_family == AF_INET6)
		flags |= MHD_USE_IPv6;
	if (server->tls_cert)
		flags |= MHD_USE_TLS;
	/* libmicrohttpd reads options until MHD_OPTION_END: skip unused TLS */
	return MHD_start_daemon(flags, 0, NULL, NULL, handle, server,
		MHD_OPTION_SOCK_ADDR, addr,
		MHD_OPTION_CONNECTION_LIMIT, (unsigned int)HTTP_MAX_CONNECTIONS,
		MHD_OPTION_PER_IP_CONNECTION_LIMIT,
		(unsigned int)HTTP_MAX_PER_ADDRESS,
		MHD_OPTION_CONNECTION_MEMORY_LIMIT,
		(size_t)HTTP_MAX_REQUEST_BYTES,
		MHD_OPTION_CONNECTION_TIMEOUT, (unsigned int)30,
		MHD_OPTION_EXTERNAL_LOGGER, mhd_log, NULL,
		server->tls_cert ? MHD_OPTION_HTTPS_MEM_CERT : MHD_OPTION_END,
		server->tls_cert ? server->tls_cert : none,
		MHD_OPTION_HTTPS_MEM_KEY, server->tls_key,
		server->tls_client_ca ? MHD_OPTION_HTTPS_MEM_TRUST
				      : MHD_OPTION_END,
		server->tls_client_ca,
		MHD_OPTION_END);
}

int http_start(const struct http_config *config, struct http_server **out,
	       char *err, size_t err_len)
{
	const char *listen = config->listen ? config->listen
					    : HTTP_DEFAULT_LISTEN;
	struct http_server *server = calloc(1, sizeof(*server));
	const union MHD_DaemonInfo *info;
	struct sockaddr_storage addr;
	socklen_t len;
	int ret;

	if (!server)
		return -ENOMEM;
	server->config = config;
	ret = http_parse_listen(listen, &addr, &len);
	if (ret)
		snprintf(err, err_len, "cannot parse listen address '%s'",
			 listen);
	else
		ret = server_secure(server, http_is_loopback((void *)&addr),
				    err, err_len);
	if (!ret) {
		server->daemon = server_daemon(server, (void *)&addr);
		if (!server->daemon) {
			ret = -EADDRNOTAVAIL;
			snprintf(err, err_len, "cannot listen on '%s'", listen);
		}
	}
	if (ret) {
		server_free(server);
		return ret;
	}
	info = MHD_get_daemon_info(server->daemon, MHD_DAEMON_INFO_BIND_PORT);
	server->port = info ? info->port : 0;
	*out = server;
	return 0;
}

uint16_t http_port(const struct http_server *server)
{
	return server->port;
}

void http_stop(struct http_server *server)
{
	if (!server)
		return;
	server->stopping = true;
	MHD_stop_daemon(server->daemon);
	server_free(server);
}
