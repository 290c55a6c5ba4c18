/*
 * 'pgvigil feed': the client of the /feed stream. Asks for JSON lines,
 * prints each record on stdout as it arrives and remembers the last id, so
 * that with --follow it reconnects after a daemon restart with ?since=ID
 * and the output has no gap and no duplicate. Plain HTTP on loopback, or
 * HTTPS (OpenSSL) with the server checked against --cacert and, for mTLS,
 * a client certificate. Single-threaded.
 */
#include <errno.h>
#include <getopt.h>
#include <netdb.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>

#include <json-c/json.h>
#include <openssl/err.h>
#include <openssl/ssl.h>
#include <openssl/x509v3.h>

#include "cli.h"
#include "http.h"
#include "log.h"

struct client_options {
	bool tls;
	char host[256];
	char port[8];
	const char *token_file;
	const char *cacert;
	const char *cert;
	const char *key;
	const char *filters[3];		/* invariant, relation, user */
	long long since;		/* -1: from the next record */
	bool follow;
	int retries;
};

struct client_conn {
	int fd;
	SSL_CTX *ctx;
	SSL *ssl;
	char buf[16384];
	size_t len;
	size_t pos;
};

static const char *const filter_names[3] = { "invariant", "relation", "user" };
static volatile sig_atomic_t client_stop;

static void on_signal(int sig)
{
	(void)sig;
	client_stop = 1;
}

/* http[s]://HOST:PORT[/...]; the path is always /feed */
static int parse_url(const char *url, struct client_options *opts)
{
	const char *rest, *end, *colon;
	size_t host_len;

	if (!strncmp(url, "https://", 8)) {
		opts->tls = true;
		rest = url + 8;
	} else if (!strncmp(url, "http://", 7)) {
		rest = url + 7;
	} else {
		return -EINVAL;
	}
	end = rest + strcspn(rest, "/");
	colon = rest[0] == '[' ? strstr(rest, "]:") : strchr(rest, ':');
	if (!colon || colon > end)
		return -EINVAL;
	if (rest[0] == '[')
		rest++;
	host_len = colon - rest;
	if (host_len >= sizeof(opts->host) ||
	    (size_t)(end - colon - 1 - (*colon == ']')) >= sizeof(opts->port))
		return -EINVAL;
	memcpy(opts->host, rest, host_len);
	opts->host[host_len] = 0;
	colon += *colon == ']' ? 2 : 1;
	memcpy(opts->port, colon, end - colon);
	opts->port[end - colon] = 0;
	return 0;
}

static int tcp_connect(const struct client_options *opts)
{
	struct addrinfo hints = { .ai_socktype = SOCK_STREAM }, *res, *ai;
	int fd = -1;

	if (getaddrinfo(opts->host, opts->port, &hints, &res))
		return -EHOSTUNREACH;
	for (ai = res; ai && fd < 0; ai = ai->ai_next) {
		fd = socket(ai->ai_family, ai->ai_socktype | SOCK_CLOEXEC, 0);
		if (fd >= 0 && connect(fd, ai->ai_addr, ai->ai_addrlen)) {
			close(fd);
			fd = -1;
		}
	}
	freeaddrinfo(res);
	return fd >= 0 ? fd : -ECONNREFUSED;
}

static int tls_setup(struct client_conn *conn,
		     const struct client_options *opts)
{
	X509_VERIFY_PARAM *param;

	conn->ctx = SSL_CTX_new(TLS_client_method());
	if (!conn->ctx)
		return -ENOMEM;
	SSL_CTX_set_min_proto_version(conn->ctx, TLS1_2_VERSION);
	SSL_CTX_set_verify(conn->ctx, SSL_VERIFY_PEER, NULL);
	if ((opts->cacert ?
	     !SSL_CTX_load_verify_locations(conn->ctx, opts->cacert, NULL) :
	     !SSL_CTX_set_default_verify_paths(conn->ctx)))
		return -EINVAL;
	if (opts->cert &&
	    (SSL_CTX_use_certificate_chain_file(conn->ctx, opts->cert) != 1 ||
	     SSL_CTX_use_PrivateKey_file(conn->ctx, opts->key ? opts->key
				: opts->cert, SSL_FILETYPE_PEM) != 1))
		return -EINVAL;
	conn->ssl = SSL_new(conn->ctx);
	if (!conn->ssl)
		return -ENOMEM;
	param = SSL_get0_param(conn->ssl);
	/* the server's name or address must be in its certificate */
	if (!X509_VERIFY_PARAM_set1_ip_asc(param, opts->host))
		SSL_set1_host(conn->ssl, opts->host);
	SSL_set_tlsext_host_name(conn->ssl, opts->host);
	SSL_set_fd(conn->ssl, conn->fd);
	return SSL_connect(conn->ssl) == 1 ? 0 : -EPROTO;
}

static void conn_close(struct client_conn *conn)
{
	if (conn->ssl) {
		SSL_shutdown(conn->ssl);
		SSL_free(conn->ssl);
	}
	SSL_CTX_free(conn->ctx);
	if (conn->fd >= 0)
		close(conn->fd);
	memset(conn, 0, sizeof(*conn));
	conn->fd = -1;
}

static int conn_write(struct client_conn *conn, const char *buf, size_t len)
{
	ssize_t n;

	while (len) {
		n = conn->ssl ? SSL_write(conn->ssl, buf, len)
			      : write(conn->fd, buf, len);
		if (n <= 0)
			return -EIO;
		buf += n;
		len -= n;
	}
	return 0;
}

/* One line without its CR LF; 0 at the end of the stream, or -errno */
static int conn_line(struct client_conn *conn, char **line, size_t *len)
{
	char *nl;
	ssize_t n;

	for (;;) {
		nl = memchr(conn->buf + conn->pos, '\n', conn->len - conn->pos);
		if (nl) {
			*line = conn->buf + conn->pos;
			*len = nl - *line;
			if (*len && nl[-1] == '\r')
				(*len)--;
			*nl = 0;
			conn->pos = nl + 1 - conn->buf;
			return 1;
		}
		memmove(conn->buf, conn->buf + conn->pos, conn->len - conn->pos);
		conn->len -= conn->pos;
		conn->pos = 0;
		if (conn->len == sizeof(conn->buf) - 1)
			return -E2BIG;
		n = conn->ssl ? SSL_read(conn->ssl, conn->buf + conn->len,
					 sizeof(conn->buf) - 1 - conn->len)
			      : read(conn->fd, conn->buf + conn->len,
				     sizeof(conn->buf) - 1 - conn->len);
		if (n <= 0)
			return n == 0 || conn->ssl ? 0 : -errno;
		conn->len += n;
	}
}

static int read_token(const char *path, char *token, size_t len)
{
	FILE *file = fopen(path, "re");

	if (!file)
		return -errno;
	if (!fgets(token, len, file))
		token[0] = 0;
	fclose(file);
	token[strcspn(token, "\r\n")] = 0;
	return token[0] ? 0 : -EINVAL;
}

/* Filter values go in the query: keep unreserved bytes, escape the rest */
static void put_query_value(FILE *out, const char *value)
{
	for (; *value; value++) {
		if (strchr("-._~*", *value) || (*value >= '0' && *value <= '9') ||
		    ((*value | 32) >= 'a' && (*value | 32) <= 'z'))
			fputc(*value, out);
		else
			fprintf(out, "%%%02X", (unsigned char)*value);
	}
}

static int send_request(struct client_conn *conn,
			const struct client_options *opts, long long since)
{
	char token[1024], *request = NULL;
	size_t len = 0;
	FILE *out;
	int i, ret;

	out = open_memstream(&request, &len);
	if (!out)
		return -ENOMEM;
	fprintf(out, "GET /feed?format=jsonl&follow=%d", opts->follow);
	if (since >= 0)
		fprintf(out, "&since=%lld", since);
	for (i = 0; i < 3; i++) {
		if (!opts->filters[i])
			continue;
		fprintf(out, "&%s=", filter_names[i]);
		put_query_value(out, opts->filters[i]);
	}
	fprintf(out, " HTTP/1.0\r\nHost: %s\r\n", opts->host);
	if (opts->token_file && !read_token(opts->token_file, token,
					    sizeof(token)))
		fprintf(out, "Authorization: Bearer %s\r\n", token);
	fputs("\r\n", out);
	fclose(out);
	ret = conn_write(conn, request, len);
	OPENSSL_cleanse(request, len);
	OPENSSL_cleanse(token, sizeof(token));
	free(request);
	return ret;
}

/*
 * Status line and headers; returns the status code or -errno. A stream
 * opened without --since learns where it started from the cursor header,
 * so a reconnect does not skip what was emitted while the daemon was down.
 */
static int read_head(struct client_conn *conn, long long *since)
{
	int status = -EPROTO, ret;
	long long cursor;
	char *line;
	size_t len;

	ret = conn_line(conn, &line, &len);
	if (ret <= 0)
		return ret ? ret : -ECONNRESET;
	if (sscanf(line, "HTTP/%*s %d", &status) != 1)
		return -EPROTO;
	while ((ret = conn_line(conn, &line, &len)) > 0 && len) {
		if (*since < 0 &&
		    sscanf(line, HTTP_CURSOR_HEADER ": %lld", &cursor) == 1)
			*since = cursor;
	}
	return ret < 0 ? ret : status;
}

/* Print records until the stream ends; *since follows the last id */
static int copy_records(struct client_conn *conn, long long *since)
{
	struct json_object *record, *id;
	char *line;
	size_t len;
	int ret = 0;

	while (!client_stop && (ret = conn_line(conn, &line, &len)) > 0) {
		if (!len)
			continue;
		record = json_tokener_parse(line);
		if (record && json_object_object_get_ex(record, "id", &id))
			*since = json_object_get_int64(id);
		json_object_put(record);
		line[len] = '\n';
		if (fwrite(line, 1, len + 1, stdout) != len + 1 ||
		    fflush(stdout))
			return -EPIPE;
	}
	return ret < 0 ? ret : 0;
}

/* One connection. Returns 0 when the stream ended, or -errno / HTTP code */
static int stream_once(const struct client_options *opts, long long *since)
{
	struct client_conn conn = { .fd = -1 };
	int ret;

	conn.fd = tcp_connect(opts);
	if (conn.fd < 0)
		return conn.fd;
	ret = opts->tls ? tls_setup(&conn, opts) : 0;
	if (!ret)
		ret = send_request(&conn, opts, *since);
	if (!ret)
		ret = read_head(&conn, since);
	if (ret == 200)
		ret = copy_records(&conn, since);
	conn_close(&conn);
	return ret;
}

static void usage(FILE *out)
{
	fprintf(out,
		"usage: pgvigil feed [--url URL | --listen ADDR:PORT] [--since ID]\n"
		"                    [--follow] [--token-file FILE] [--cacert FILE]\n"
		"                    [--cert FILE --key FILE] [--invariant NAME]\n"
		"                    [--relation SCHEMA.TABLE] [--user NAME]\n"
		"                    [--retries N]\n\n"
		"Print the violation records of a running 'pgvigil run', one JSON\n"
		"line each. --since ID prints the records after ID (0: all the\n"
		"journal holds), then the new ones; --follow keeps the stream open\n"
		"and resumes after the last id when the daemon restarts,\n"
		"giving up after --retries N attempts in a row without\n"
		"progress (default 30, one a second).\n"
		"Default: http://%s\n", HTTP_DEFAULT_LISTEN);
}

static int parse_options(int argc, char **argv, struct client_options *opts)
{
	static const struct option longopts[] = {
		{ "url", required_argument, NULL, 'u' },
		{ "listen", required_argument, NULL, 'l' },
		{ "since", required_argument, NULL, 's' },
		{ "follow", no_argument, NULL, 'f' },
		{ "token-file", required_argument, NULL, 't' },
		{ "cacert", required_argument, NULL, 'C' },
		{ "cert", required_argument, NULL, 'c' },
		{ "key", required_argument, NULL, 'k' },
		{ "invariant", required_argument, NULL, 'I' },
		{ "relation", required_argument, NULL, 'R' },
		{ "user", required_argument, NULL, 'U' },
		{ "retries", required_argument, NULL, 'r' },
		{ "help", no_argument, NULL, 'h' },
		{ NULL, 0, NULL, 0 },
	};
	char url[300], *end;
	int c;

	snprintf(url, sizeof(url), "http://%s", HTTP_DEFAULT_LISTEN);
	opts->since = -1;
	opts->retries = 30;
	while ((c = getopt_long(argc, argv, "h", longopts, NULL)) != -1) {
		switch (c) {
		case 'u': snprintf(url, sizeof(url), "%s", optarg); break;
		case 'l': snprintf(url, sizeof(url), "http://%s", optarg); break;
		case 's':
			opts->since = strtoll(optarg, &end, 10);
			if (*end || opts->since < 0)
				return -EINVAL;
			break;
		case 'f': opts->follow = true; break;
		case 't': opts->token_file = optarg; break;
		case 'C': opts->cacert = optarg; break;
		case 'c': opts->cert = optarg; break;
		case 'k': opts->key = optarg; break;
		case 'I': opts->filters[0] = optarg; break;
		case 'R': opts->filters[1] = optarg; break;
		case 'U': opts->filters[2] = optarg; break;
		case 'r': opts->retries = atoi(optarg); break;
		case 'h': return 1;
		default: return -EINVAL;
		}
	}
	if (optind != argc)
		return -EINVAL;
	return parse_url(url, opts);
}

static void report(int ret)
{
	if (ret == 401 || ret == 403)
		log_error("the server refused the credentials (HTTP %d)", ret);
	else if (ret > 0)
		log_error("the server answered HTTP %d", ret);
	else
		log_error("feed connection failed: %s", strerror(-ret));
}

int cmd_feed(int argc, char **argv)
{
	struct client_options opts = { 0 };
	int ret, failures = 0;
	long long since;

	log_setup(LOG_INFO, LOG_FORMAT_AUTO);
	ret = parse_options(argc, argv, &opts);
	if (ret) {
		usage(ret > 0 ? stdout : stderr);
		return ret > 0 ? EXIT_OK : EXIT_ERROR;
	}
	signal(SIGINT, on_signal);
	signal(SIGTERM, on_signal);
	signal(SIGPIPE, SIG_IGN);
	since = opts.since;
	for (;;) {
		long long before = since;

		ret = stream_once(&opts, &since);
		if (!opts.follow || client_stop || ret == 401 || ret == 403)
			break;
		/* the daemon went away: resume after the last id printed */
		failures = since != before ? 0 : failures + 1;
		if (failures > opts.retries)
			break;
		log_debug("feed: reconnecting after id %lld", since);
		sleep(1);
	}
	if (ret && !client_stop)
		report(ret);
	return ret && !client_stop ? EXIT_ERROR : EXIT_OK;
}
